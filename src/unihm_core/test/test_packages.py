"""Workspace layout: every package's manifest is valid and consistent with its Python build."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

SRC = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.parent for p in SRC.glob("*/package.xml"))
PYTHON_PACKAGES = [p for p in PACKAGES if (p / "setup.py").is_file()]


def test_expected_layout() -> None:
    assert [p.name for p in PACKAGES] == ["unihm_bringup", "unihm_core", "unihm_generator",
                                         "unihm_msgs", "unihm_perception", "unihm_refiner"]


@pytest.mark.parametrize("pkg", PACKAGES, ids=lambda p: p.name)
def test_manifest(pkg: Path) -> None:
    manifest = parse_package(str(pkg / "package.xml"))
    manifest.validate()
    assert manifest.package_format == 3
    assert manifest.name == pkg.name
    assert manifest.licenses and manifest.maintainers
    build_type = manifest.get_build_type()
    assert build_type == ("ament_python" if (pkg / "setup.py").is_file() else "ament_cmake")
    assert (pkg / "test").is_dir(), f"{pkg.name} has no test/ folder"


@pytest.mark.parametrize("pkg", PYTHON_PACKAGES, ids=lambda p: p.name)
def test_python_package_is_installed_consistently(pkg: Path) -> None:
    manifest = parse_package(str(pkg / "package.xml"))
    assert (pkg / "resource" / pkg.name).is_file(), "ament resource marker missing"
    assert (pkg / pkg.name / "__init__.py").is_file()
    assert f"script_dir=$base/lib/{pkg.name}" in (pkg / "setup.cfg").read_text()
    assert metadata.version(pkg.name) == manifest.version, "setup.py and package.xml disagree"


@pytest.mark.parametrize("pkg", PYTHON_PACKAGES, ids=lambda p: p.name)
def test_registered_in_the_ament_index(pkg: Path) -> None:
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory(pkg.name))
    assert (share / "package.xml").resolve() == (pkg / "package.xml").resolve()
