"""unihm_core is shared by every package, nodes and libraries alike: it must not load ROS."""

import pytest

from unihm_core.testing import assert_imports_without_ros


@pytest.mark.parametrize("module", ["unihm_core", "unihm_core.assets", "unihm_core.cli",
                                    "unihm_core.doctor", "unihm_core.interface_hashes"])
def test_imports_without_ros(module: str) -> None:
    assert_imports_without_ros(module)


def test_detects_a_module_that_imports_ros() -> None:
    with pytest.raises(AssertionError, match="imports ROS modules: rclpy"):
        assert_imports_without_ros("rclpy.node")
