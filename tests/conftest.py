"""Test session setup: CPU only, two logical CPU devices (for tf.distribute tests), quiet logs."""
import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Must run before TensorFlow initialises its devices, hence at import time of the test session.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


@pytest.hookimpl(trylast=True)  # after `-m` has deselected what will not run
def pytest_collection_modifyitems(items: list) -> None:
    """Costliest test files first. pytest-xdist (`--dist loadfile --no-loadscope-reorder`, see the Makefile)
    hands files to workers in this order, so a long single-test file cannot start last and leave one core
    idle at the end (xdist's own reorder puts files with more tests first). Measured on 2 cores it left the
    wall time as it was (make test 413 vs 409 s; the slow suite's idle tail became contention): the suites
    are CPU-bound, and only less work shortens them."""
    cost: dict = {}
    for item in items:
        marker = item.get_closest_marker("cost")
        cost[item.path] = cost.get(item.path, 0) + (marker.args[0] if marker else 0)
    items.sort(key=lambda item: -cost[item.path])  # stable: a file's tests keep their order and stay together
