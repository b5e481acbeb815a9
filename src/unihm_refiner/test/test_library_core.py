"""unihm_refiner keeps its science in plain modules: importing the package must not load ROS."""

from unihm_core.testing import assert_imports_without_ros


def test_imports_without_ros() -> None:
    assert_imports_without_ros("unihm_refiner")
