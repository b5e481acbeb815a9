"""ament_python build entry; the package metadata is declared in setup.cfg."""

from setuptools import setup

setup()
