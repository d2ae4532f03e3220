"""What machine a run used, for the report's "This run" section (timings mean little without it)."""
from __future__ import annotations

import functools
import os
import platform
import time


def load_average() -> tuple[float, float, float] | None:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def gpus() -> list[str]:
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def cpu_count() -> int:
    """Cores this process may use (the affinity mask under SLURM or taskset), not the whole host's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_in_effect() -> int:
    """The intra-op thread count TensorFlow uses in this process (its default: every available core)."""
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads() or cpu_count()


@functools.cache  # fixed for the life of a process; asked once per cell
def kernels() -> str:
    """What picks TensorFlow's kernels in this process, so how they round: the GPUs, or on a CPU its model,
    its widest vector instructions and whether oneDNN's kernels are on; and TensorFlow's and Keras' versions
    (Keras builds the layers, losses and optimizers whose arithmetic the kernels run). The same
    code, seed and thread count trained the efficient demo's baseline to 88.9% natural accuracy on one CPU
    and to 86.2% on an AMD EPYC with AVX2 (87.8% there with oneDNN on)."""
    import keras
    import tensorflow as tf

    found = tf.config.list_physical_devices("GPU")
    if found:
        details = [tf.config.experimental.get_device_details(d) for d in found]
        devices = "GPU: " + ", ".join(f"{d.get('device_name', 'unknown')} (compute capability "
                                      f"{'.'.join(map(str, d.get('compute_capability', ())))})" for d in details)
    else:
        info = _cpu_info()
        devices = f"CPU: {_cpu_model(info)}, {_vector_isa(info)}, oneDNN {_onednn()}"
    return f"{devices}; TensorFlow {tf.__version__}, Keras {keras.__version__}"


#: x86 vector instruction sets below AVX-512 (as kernels() names them), where TensorFlow leaves oneDNN off.
BELOW_AVX512 = ("AVX2", "AVX", "SSE4.2")


def onednn_below_avx512(kernels: str) -> bool:
    """Whether a kernels() description says oneDNN's kernels ran on an x86 CPU without AVX-512, where TensorFlow
    leaves them off (so TF_ENABLE_ONEDNN_OPTS=1 turned them on): see reproduce/__init__.py for why that matters."""
    devices = kernels.split(";")[0]
    parts = devices.rsplit(", ", 2)
    return devices.startswith("CPU: ") and len(parts) == 3 and parts[1] in BELOW_AVX512 and parts[2] == "oneDNN on"


def _cpu_info() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (Linux), else {}."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            first = f.read().split("\n\n")[0]
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}


def _cpu_model(info: dict[str, str]) -> str:
    return info.get("model name") or platform.processor() or platform.machine() or "unknown"


def _vector_isa(info: dict[str, str]) -> str:
    flags = set(info.get("flags", "").split())
    for isa in ("avx512f", "avx2", "avx", "sse4_2"):
        if isa in flags:
            return isa.upper().replace("_", ".")
    return f"vector instructions unknown ({platform.machine()})"


def _onednn() -> str:
    try:
        from tensorflow.python.util import _pywrap_util_port  # TensorFlow's own oneDNN switch, read back
    except ImportError:
        return "unknown"
    return "on" if _pywrap_util_port.IsMklEnabled() else "off"


class RunClock:
    """Wall time and load of one invocation, read into facts for the report."""

    def __init__(self):
        self.started = time.perf_counter()
        self.load_before = load_average()

    def facts(self, **extra) -> dict[str, object]:
        import keras
        import tensorflow as tf

        load_after = load_average()
        load = "n/a" if load_after is None else (
            f"{self.load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end (1-minute average; a shared "
            "machine inflates times)")
        found = gpus()
        facts = {
            "wall time of this invocation": f"{(time.perf_counter() - self.started) / 60:.1f} min",
            "host": platform.node(),
            "CPU cores available": cpu_count(),
            "GPUs": ", ".join(found) if found else "none",
            "load average": load,
            "TensorFlow / Keras": f"{tf.__version__} / {keras.__version__}",
        }
        facts.update(extra)
        return facts
