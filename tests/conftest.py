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
    hands files to workers in this order, so the long poles start at once; its own reorder (files with more
    tests first) started the slowest single-test files last, and the whole run waited on them."""
    cost: dict = {}
    for item in items:
        marker = item.get_closest_marker("cost")
        cost[item.path] = cost.get(item.path, 0) + (marker.args[0] if marker else 0)
    items.sort(key=lambda item: -cost[item.path])  # stable: a file's tests keep their order and stay together
