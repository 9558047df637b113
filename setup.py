"""The build step pyproject.toml cannot declare: a wheel (and `pip install .`) carries the
default model of each task, copied at build time from checkpoints/ into the package's
`seqtool/models/` (`shipped.BUNDLED_FOLDER`), so that an installed seqtool answers from any
folder. The files are the ones `seqtool/shipped.py` names in BUNDLED_MODELS; the repository
holds no second copy. An sdist carries them in its checkpoints/, to build the wheel from.
An editable install reads the repository's checkpoints/ and copies nothing."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent


def shipped():
    """seqtool.shipped of this source tree (light: the package top and it need only the
    standard library, so nothing needs to be installed to read it)."""
    sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module("seqtool.shipped")
    finally:
        sys.path.remove(str(ROOT))


def default_models() -> list[Path]:
    """The default model files in checkpoints/; stops the build if one is missing."""
    files = [ROOT / "checkpoints" / name for name in dict.fromkeys(
        shipped().BUNDLED_MODELS.values())]
    missing = [str(f.relative_to(ROOT)) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"seqtool build: the default model(s) {', '.join(missing)} named in "
                         "seqtool/shipped.py BUNDLED_MODELS are not in checkpoints/")
    return files


class BuildWithModels(build_py):
    """build_py, plus the default models into build/lib/seqtool/models/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "seqtool" / shipped().BUNDLED_FOLDER
        shutil.rmtree(target, ignore_errors=True)  # no model left over from an earlier build
        self.mkpath(str(target))
        for file in default_models():
            self.copy_file(str(file), str(target / file.name))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        target = Path(self.build_lib) / "seqtool" / shipped().BUNDLED_FOLDER
        return [*outputs, *(str(target / f.name) for f in default_models())]


class SdistWithModels(sdist):
    """sdist, plus the default models in its checkpoints/ (a wheel is built from it)."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        target = Path(base_dir) / "checkpoints"
        self.mkpath(str(target))
        for file in default_models():
            self.copy_file(str(file), str(target / file.name))


setup(cmdclass={"build_py": BuildWithModels, "sdist": SdistWithModels})
