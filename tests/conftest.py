"""Test session setup: CPU only, two logical CPU devices (for tf.distribute tests), quiet logs, and CI's
time budget (--start-by)."""
import os
import time

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Must run before TensorFlow initialises its devices, hence at import time of the test session.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


def pytest_addoption(parser):
    parser.addoption(
        "--start-by", type=float, default=None, metavar="UNIX_TIME",
        help="skip, with a reason, every test not started by this time (CI's time budget for the slow checks); "
             "a test already running finishes")


def pytest_runtest_setup(item):
    start_by = item.config.getoption("--start-by")
    if start_by is not None and time.time() > start_by:
        started = time.strftime("%H:%M:%S", time.localtime(start_by))
        pytest.skip(f"not run: CI's time budget allowed tests to start until {started} (see .ci/run)")
