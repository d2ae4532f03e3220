"""Test session setup: CPU only, one choice of kernels for every process, two logical CPU devices (for
tf.distribute tests), quiet logs, and CI's time budget (--finish-by)."""
import os
import time

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.util import _pywrap_util_port  # noqa: E402

# The kernels TensorFlow chose for this process, passed on to every process a test starts, so that a runner
# process records the same tf_kernels, and the same numbers, as the test process it is compared with.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if _pywrap_util_port.IsMklEnabled() else "0"

# Must run before TensorFlow initialises its devices, hence at import time of the test session.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


#: A slow check's expected seconds when its marker does not say (`@pytest.mark.slow(seconds=N)`: its time on
#: the slowest machine CI has seen).
SLOW_CHECK_SECONDS = 30


def pytest_addoption(parser):
    parser.addoption(
        "--finish-by", type=float, default=None, metavar="UNIX_TIME",
        help="CI's time budget: skip, with the reason, each test that would not finish by this time (its expected "
             f"duration: its slow marker's seconds, else {SLOW_CHECK_SECONDS})")


@pytest.hookimpl(tryfirst=True)  # before any fixture of the test is set up
def pytest_runtest_setup(item):
    finish_by = item.config.getoption("--finish-by")
    if finish_by is None:
        return
    marker = item.get_closest_marker("slow")
    expected = marker.kwargs.get("seconds", SLOW_CHECK_SECONDS) if marker else SLOW_CHECK_SECONDS
    if time.time() + expected > finish_by:
        ends = time.strftime("%H:%M:%S", time.localtime(finish_by))
        pytest.skip(f"not run: it takes about {expected} s and CI's time budget ends at {ends} (see .ci/run)")
