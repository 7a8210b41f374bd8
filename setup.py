"""Build script for the compiled engine (the rest of the metadata is in pyproject.toml)."""
from setuptools import setup

setup()
