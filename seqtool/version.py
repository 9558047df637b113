"""The package's version, on the floor: the checkpoint writer, the command line and the build
(pyproject's dynamic version) read it here, without importing the package's API."""

__version__ = "0.1.0"
