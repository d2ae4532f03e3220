"""What machine a run used, for the report's "This run" section (timings mean little without it)."""
from __future__ import annotations

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
