"""The package version: one place, read by pyproject (setuptools dynamic version) and by the model metadata."""

__version__ = "0.1.0"
