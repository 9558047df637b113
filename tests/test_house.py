"""The package's shape, benchmarks included: layers import only downward, no import circle,
short modules, and the README's Python example runs as written."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "seqtool"
BENCHMARKS = ROOT / "benchmarks"  # scripts that import each other by bare name (`from common`)
# Each module's floor; a module may import from its own floor or below. Training and
# inference stand side by side: neither may import the other.
FLOORS = [
    ("seqtool.errors", "seqtool.shipped", "seqtool.words", "seqtool.config", "seqtool.results",
     "seqtool.checkpoint", "seqtool.metrics", "seqtool.modelfile", "seqtool.version",
     "seqtool.threads"),
    ("seqtool.text",),
    ("seqtool.nn", "seqtool.device", "seqtool.engine"),
    ("seqtool.decoding",),
    ("seqtool.training", "seqtool.inference"),
    ("seqtool.api", "seqtool.api_distill"),
    ("seqtool.cli", "seqtool.serve", "seqtool.report", "seqtool.plot", "benchmarks"),
]
API_FLOOR = 5  # the package itself (`seqtool.load`, ...) is the API's face


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> int:
    if module == "seqtool":
        return API_FLOOR
    for level, prefixes in enumerate(FLOORS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    raise AssertionError(f"{module} has no floor in FLOORS: place it")


def imports(path: Path) -> set[str]:
    """Every seqtool module a file imports, at the top or inside a function (a circle through
    a lazy import is still a circle); imports for type checking only are left out. A
    benchmark's bare `from common import` names its sibling benchmarks/common.py."""
    tree = ast.parse(path.read_text())
    siblings = {p.stem for p in path.parent.glob("*.py")} if path.parent.name == "benchmarks" \
        else set()
    checking = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        if isinstance(node, ast.ImportFrom) and node.module in siblings:
            found.add(f"benchmarks.{node.module}")
        elif isinstance(node, ast.Import) and siblings:
            found.update(f"benchmarks.{a.name}" for a in node.names if a.name in siblings)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seqtool"):
            for alias in node.names:  # `from seqtool.decoding import search` names a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                          else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("seqtool"))
    return found


def sources() -> list[Path]:
    return [*PACKAGE.rglob("*.py"), *BENCHMARKS.glob("*.py")]


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sources()}


def test_layers_import_only_downward():
    upward = []
    for module, targets in graph().items():
        if module == "seqtool":  # the package's lazy names point at the API on purpose
            continue
        for target in targets:
            side = {floor(module), floor(target)} == {4} and \
                module.split(".")[1] != target.split(".")[1]
            if floor(target) > floor(module) or side:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports against the layers:\n" + "\n".join(sorted(upward))


def circles(edges: dict[str, set[str]]) -> list[str]:
    """Each import circle of a module graph, as `a -> b -> a`."""
    state: dict[str, int] = {}
    found: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if nxt == "seqtool" or nxt not in edges:
                continue
            if state.get(nxt) == 1:
                found.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state and node != "seqtool":
            visit(node, [node])
    return found


def test_no_import_circle():
    found = circles(graph())
    assert not found, "import circles:\n" + "\n".join(found)


def test_no_module_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in sources()
            if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The checks above would catch a violation: the floors order real modules."""
    assert floor("seqtool.text.data") < floor("seqtool.nn.classifier") < \
        floor("seqtool.decoding.search") < floor("seqtool.training.loop") < \
        floor("seqtool.api") < floor("seqtool.cli")
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from seqtool.training.loop import Trainer\n")
    assert imports(bad) == {"seqtool.training.loop"}


def test_the_checks_see_the_package_top_and_benchmark_circles(tmp_path):
    """`from seqtool import __version__` below the API is upward (the package is the API's
    face); two benchmarks importing each other, even inside functions, are a circle."""
    low = tmp_path / "low.py"
    low.write_text("from seqtool import __version__\n")
    assert imports(low) == {"seqtool"} and floor("seqtool") > floor("seqtool.checkpoint")
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "a.py").write_text("from common import ROOT\n\ndef f():\n    from b import g\n")
    (bench / "b.py").write_text("import a\n")
    (bench / "common.py").write_text("ROOT = 1\n")
    edges = {f"benchmarks.{p.stem}": imports(p) for p in bench.glob("*.py")}
    assert edges["benchmarks.a"] == {"benchmarks.common", "benchmarks.b"}
    assert circles(edges) == ["benchmarks.a -> benchmarks.b -> benchmarks.a"]


def test_readme_python_example_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- api example -->\s*```python\n(.*?)```", readme, re.S)
    assert match, "the README's API example is marked <!-- api example -->"
    code = match.group(1).replace("/tmp/toy-classifier.pt", str(tmp_path / "toy.pt"))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "toy.pt").is_file()
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] in {"positive", "negative"}
