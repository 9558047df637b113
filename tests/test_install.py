"""seqtool installed as a package: the wheel carries the default models (and nothing more of
checkpoints/), installs without torch, and answers from any folder; without torch, a command
that needs it says in one line what to install."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from seqtool.shipped import BUNDLED_FOLDER, BUNDLED_MODELS
from tests.conftest import ROOT

WHEEL_LIMIT = 40_000_000  # bytes (issue #32)
NEEDS_TORCH = "needs PyTorch: pip install 'seqtool[torch]'"
# Runs the command line of this checkout with torch unimportable, as where it is not installed.
WITHOUT_TORCH = ("import sys; sys.modules['torch'] = None; sys.argv[0] = 'seqtool'; "
                 "from seqtool.cli import main; main()")
TORCH = ("torch", "functorch", "torchgen", "nvidia", "triton")  # site-packages entries
THIS_CHECKOUT = ("seqtool", "__editable__")  # the editable install of the test environment


def build(source: Path, out: Path, kind: str) -> subprocess.CompletedProcess:
    """What `python -m build` does, without build isolation (offline): setuptools' PEP 517
    backend run in `source`."""
    code = f"from setuptools import build_meta; print(build_meta.build_{kind}({str(out)!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True,
                          text=True, timeout=600)


def source_tree(into: Path, models: bool = True) -> Path:
    """The files a build reads, as a clean clone holds them (no build/ or egg-info)."""
    into.mkdir()
    shutil.copytree(ROOT / "seqtool", into / "seqtool",
                    ignore=shutil.ignore_patterns("__pycache__", BUNDLED_FOLDER))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, into / name)
    (into / "checkpoints").mkdir()
    for name in set(BUNDLED_MODELS.values()) if models else ():
        shutil.copy2(ROOT / "checkpoints" / name, into / "checkpoints" / name)
    return into


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built as `python -m build` builds it: an sdist, then the wheel from it."""
    work = tmp_path_factory.mktemp("build")
    dist = work / "dist"
    done = build(source_tree(work / "clone"), dist, "sdist")
    assert done.returncode == 0, done.stderr[-3000:]
    with tarfile.open(dist / done.stdout.split()[-1]) as sdist:
        sdist.extractall(work / "unpacked", filter="data")
    (unpacked,) = (work / "unpacked").iterdir()
    done = build(unpacked, dist, "wheel")
    assert done.returncode == 0, done.stderr[-3000:]
    return dist / done.stdout.split()[-1]


@pytest.mark.slow
def test_wheel_carries_the_default_models_within_the_limit(wheel):
    with zipfile.ZipFile(wheel) as z:
        bundled = {Path(i.filename).name: i.file_size for i in z.infolist()
                   if i.filename.startswith(f"seqtool/{BUNDLED_FOLDER}/")}
        metadata = z.read(f"seqtool-{wheel.name.split('-')[1]}.dist-info/METADATA").decode()
    assert bundled == {name: (ROOT / "checkpoints" / name).stat().st_size
                       for name in BUNDLED_MODELS.values()}
    assert wheel.stat().st_size <= WHEEL_LIMIT, wheel.stat().st_size
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert any(line.startswith("Requires-Dist: torch") and "extra == \"torch\"" in line
               for line in requires), requires
    assert not [line for line in requires if line.startswith("Requires-Dist: torch")
                and "extra" not in line], "torch is an extra, not a dependency"


def test_the_build_stops_when_a_default_model_is_missing(tmp_path):
    done = build(source_tree(tmp_path / "clone", models=False), tmp_path / "dist", "wheel")
    assert done.returncode != 0
    assert BUNDLED_MODELS["classify"] in done.stderr + done.stdout
    assert "BUNDLED_MODELS" in done.stderr + done.stdout


def test_the_repository_holds_no_second_copy_of_a_model():
    assert not (ROOT / "seqtool" / BUNDLED_FOLDER).exists()
    big = [str(p) for p in (ROOT / "seqtool").rglob("*") if p.is_file()
           and p.stat().st_size > 1_000_000]
    assert not big, big


def shipped_module(package: Path):
    """seqtool/shipped.py loaded from a copy at `package`, as an installed one would be."""
    package.mkdir(parents=True)
    shutil.copy2(ROOT / "seqtool" / "shipped.py", package / "shipped.py")
    name = f"shipped_copy_{abs(hash(package))}"
    spec = importlib.util.spec_from_file_location(name, package / "shipped.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up while it runs
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_checkpoints_folder_order(tmp_path, monkeypatch):
    """$SEQTOOL_CHECKPOINTS, else the repository's checkpoints/, else the bundled models."""
    monkeypatch.delenv("SEQTOOL_CHECKPOINTS", raising=False)
    installed = shipped_module(tmp_path / "site-packages" / "seqtool")
    (tmp_path / "site-packages" / "seqtool" / BUNDLED_FOLDER).mkdir()
    assert installed.checkpoints_folder() == tmp_path / "site-packages" / "seqtool" / \
        BUNDLED_FOLDER
    clone = shipped_module(tmp_path / "clone" / "seqtool")
    (tmp_path / "clone" / "checkpoints").mkdir()
    (tmp_path / "clone" / "seqtool" / BUNDLED_FOLDER).mkdir()  # a build in place
    assert clone.checkpoints_folder() == tmp_path / "clone" / "checkpoints"
    monkeypatch.setenv("SEQTOOL_CHECKPOINTS", str(tmp_path / "mine"))
    assert installed.checkpoints_folder() == clone.checkpoints_folder() == tmp_path / "mine"


@pytest.mark.parametrize("args", [
    ["train", "classify", "--train", "t.tsv", "--dev", "d.tsv", "--out", "m.pt"],
    ["pretrain", "--train", "t.txt", "--dev", "d.txt", "--out", "lm.pt"],
    ["ensemble", "a.pt", "b.pt", "--out", "m.pt"],
])
def test_a_command_needing_torch_says_what_to_install(tmp_path, args):
    for name in ("t.tsv", "d.tsv", "t.txt", "d.txt", "a.pt", "b.pt"):
        (tmp_path / name).write_text("positive\tgood\n")
    done = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *args], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    command = " ".join(["seqtool", *args[:2]] if args[0] == "train" else ["seqtool", args[0]])
    assert done.stderr == f"Error: {command} {NEEDS_TORCH}\n"


def test_help_needs_no_torch():
    done = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "translate" in done.stdout, done.stderr


# ----------------------------------------------------------------------------- installed


def site_packages(python: Path, kind: str = "purelib") -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                          f"{kind!r}))"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def install(wheel: Path, venv: Path, with_torch: bool) -> Path:
    """A fresh venv holding the wheel; its dependencies are this environment's packages
    (offline), linked in one folder that a .pth file adds, torch among them only if asked."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--no-deps", "--no-index", "--disable-pip-version-check", "--quiet",
                    str(wheel)], check=True, timeout=300)
    deps = venv / "deps"
    deps.mkdir()
    hidden = THIS_CHECKOUT if with_torch else THIS_CHECKOUT + TORCH
    here = Path(sys.executable)
    for folder in {site_packages(here), site_packages(here, "platlib")}:
        for entry in folder.iterdir():
            link = deps / entry.name
            if not (entry.name.startswith(hidden) or entry.suffix == ".pth" or link.exists()):
                link.symlink_to(entry)
    (site_packages(python) / "deps.pth").write_text(f"{deps}\n")
    return venv


def run_installed(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "SEQTOOL_CHECKPOINTS", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def without_torch(wheel, tmp_path_factory) -> Path:
    return install(wheel, tmp_path_factory.mktemp("plain") / "venv", with_torch=False)


@pytest.fixture(scope="module")
def with_torch(wheel, tmp_path_factory) -> Path:
    return install(wheel, tmp_path_factory.mktemp("torch") / "venv", with_torch=True)


@pytest.mark.slow
def test_installed_without_torch_has_no_torch_and_trains_not(without_torch, tmp_path):
    done = run_installed(without_torch, "python", "-c", "import torch", cwd=tmp_path)
    assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr
    done = run_installed(without_torch, "seqtool", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "classify" in done.stdout, done.stderr
    done = run_installed(without_torch, "python", "-c", "import seqtool.shipped as s; "
                         "print(s.checkpoints_folder())", cwd=tmp_path)
    assert Path(done.stdout.strip()) == site_packages(without_torch / "bin" / "python") / \
        "seqtool" / BUNDLED_FOLDER
    (tmp_path / "train.tsv").write_text("positive\tgood\n")
    done = run_installed(without_torch, "seqtool", "train", "classify", "--train", "train.tsv",
                         "--dev", "train.tsv", "--out", "m.pt", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        1, f"Error: seqtool train classify {NEEDS_TORCH}\n")


@pytest.mark.slow
def test_installed_without_torch_classifies_from_any_folder(without_torch, tmp_path):
    done = run_installed(without_torch, "seqtool", "classify", "A fine film.",
                         "--format", "tsv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\t")[0] == "positive"


@pytest.mark.slow
def test_installed_with_torch_answers_from_any_folder(with_torch, tmp_path):
    done = run_installed(with_torch, "seqtool", "classify", "A fine film.", "--format", "tsv",
                         cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\t")[0] == "positive"
    done = run_installed(with_torch, "seqtool", "translate", "Dieu est amour.", "--beam", "1",
                         cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "love" in done.stdout.lower()


@pytest.mark.slow
def test_editable_install_reads_the_repository(tmp_path):
    """`pip install -e .`: no model copied anywhere; the clone's checkpoints/ answers."""
    clone = source_tree(tmp_path / "clone")
    done = build(clone, tmp_path / "dist", "editable")
    assert done.returncode == 0, done.stderr[-3000:]
    editable = tmp_path / "dist" / done.stdout.split()[-1]
    with zipfile.ZipFile(editable) as z:
        assert not [n for n in z.namelist() if n.endswith(tuple(BUNDLED_MODELS.values()))]
    venv = install(editable, tmp_path / "venv", with_torch=False)
    done = run_installed(venv, "python", "-c", "import seqtool.shipped as s; "
                         "print(s.checkpoints_folder())", cwd=tmp_path)
    assert Path(done.stdout.strip()) == clone / "checkpoints", done.stderr
    assert not (clone / "seqtool" / BUNDLED_FOLDER).exists()


def readme_commands() -> list[str]:
    import re

    readme = (ROOT / "README.md").read_text()
    return re.findall(r"<!-- fresh-machine command -->\s*```sh\n(.*?)\n```", readme, re.S)


def test_ci_runs_the_readme_test_command():
    setup, test = readme_commands()
    assert "'.[dev]'" in test and "pytest" in test
    assert test in (ROOT / ".ci" / "run").read_text()


def test_the_readme_first_command_installs_without_torch():
    setup, _ = readme_commands()
    install = setup.split("&&")[0]
    assert install.split()[:2] == ["pip", "install"] and "torch" not in install
    assert "seqtool translate" in setup and "seqtool classify" in setup
