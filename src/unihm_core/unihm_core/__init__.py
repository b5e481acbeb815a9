"""Shared, ROS-free core of UniHM for ROS 2: assets lookup, the `unihm` CLI, and (as the
project grows) hand/arm models, SE(3) helpers, dataset schema and metrics."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("unihm_core")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
