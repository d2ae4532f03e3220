"""The three SGD training settings of Kamath et al. 2019 (section 5), as Keras schedules and optimizers.

* "LR" (Smith et al. 2017): learning rate fixed at 0.01 whatever the batch size B.
* "LR/BS" (Jastrzebski et al. 2017): learning rate = 0.00015625 * B, a constant ratio (= 0.01 / 64, so the
  two settings coincide at B = 64).
* "Benchmark" (Yao et al. 2018b): learning rate 0.01, momentum 0.9, halved after every 5 epochs.

All three run 100 epochs in the paper, with no weight decay (the paper defers the Benchmark's weight decay
to Yao et al.; their code, HessianFlow, builds SGD without any) and no other learning-rate change. "LR" and
"LR/BS" take a momentum from the sweeps 0/0.2/0.5/0.9 and 0/0.9.

Every optimizer step sees a full batch: the last partial batch of an epoch is dropped, as HessianFlow's
training loop skips batches smaller than its 128-sample chunk. A batch may be accumulated from micro-batches
(HessianFlow's `large_ratio`: the loss of each 128-sample chunk divided by the ratio, one step per ratio
chunks, carried across epoch ends), so BatchNorm sees 128 samples at a time ("ghost" batches). Schedules
need the number of updates per epoch (`updates_per_epoch`) and, with accumulation, the micro-batches per
update: Keras reads a schedule at its step counter, which counts micro-batches, not updates.
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import Literal

import keras

Schedule = Literal["LR", "LR/BS", "Benchmark"]
SCHEDULES: tuple[Schedule, ...] = ("LR", "LR/BS", "Benchmark")

FIXED_LEARNING_RATE = 0.01
LEARNING_RATE_PER_SAMPLE = 0.00015625
BENCHMARK_MOMENTUM = 0.9
BENCHMARK_HALVING_EPOCHS = 5
PAPER_EPOCHS = 100
#: Momentum values swept in sections 4.1 (LR) and 4.2 (LR/BS).
MOMENTUM_SWEEPS: dict[str, tuple[float, ...]] = {"LR": (0.0, 0.2, 0.5, 0.9), "LR/BS": (0.0, 0.9)}


@keras.saving.register_keras_serializable(package="tfadv")
class ConstantLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """The same learning rate at every step (a schedule object, so every setting is one type)."""

    def __init__(self, learning_rate: float):
        self.learning_rate = float(learning_rate)

    def __call__(self, step):
        return keras.ops.convert_to_tensor(self.learning_rate, dtype="float32")

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate}


def accumulation_steps(batch_size: int, micro_batch: int | None) -> int:
    """Micro-batches per batch: 1 without micro-batches or when B <= micro_batch, else B / micro_batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if micro_batch is None or batch_size <= micro_batch:
        return 1
    if batch_size % micro_batch:
        raise ValueError(f"batch_size {batch_size} is not a multiple of the micro-batch {micro_batch}")
    return batch_size // micro_batch


def updates_per_epoch(num_train: int, batch_size: int, micro_batch: int | None = None) -> float:
    """Optimizer updates in one epoch of full batches: N // B, or (N // m) / (B / m) with micro-batches of m
    (accumulation carries over the epoch's end, so this may be fractional)."""
    steps = accumulation_steps(batch_size, micro_batch)
    chunk = batch_size // steps
    if num_train < chunk:
        raise ValueError(f"{num_train} training samples give no full batch of {chunk}")
    return (num_train // chunk) / steps


@dataclasses.dataclass(frozen=True)
class TrainingSetting:
    """One line of the paper's plots: a schedule and a momentum ("LR, m=0.9")."""

    schedule: Schedule
    momentum: float = 0.0
    #: Multiplies every learning rate (the fixed 0.01, the ratio 0.00015625, the Benchmark's 0.01), keeping
    #: the settings' relations (LR = LR/BS at B = 64). 1.0 is the paper; tfadv's small `demo` data uses more.
    lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.schedule == "Benchmark" and self.momentum != BENCHMARK_MOMENTUM:
            raise ValueError(f"the Benchmark setting has momentum {BENCHMARK_MOMENTUM}, got {self.momentum}")
        if not self.lr_scale > 0:
            raise ValueError(f"lr_scale must be > 0, got {self.lr_scale}")

    @classmethod
    def benchmark(cls, lr_scale: float = 1.0) -> "TrainingSetting":
        return cls("Benchmark", BENCHMARK_MOMENTUM, lr_scale)

    @property
    def label(self) -> str:
        return self.schedule if self.schedule == "Benchmark" else f"{self.schedule}, m={self.momentum:g}"

    def initial_learning_rate(self, batch_size: int) -> float:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.schedule == "LR/BS":
            return self.lr_scale * LEARNING_RATE_PER_SAMPLE * batch_size
        return self.lr_scale * FIXED_LEARNING_RATE

    def learning_rate_schedule(
        self, batch_size: int, updates_per_epoch: float, accumulation: int = 1
    ) -> keras.optimizers.schedules.LearningRateSchedule:
        """Learning rate as a function of the optimizer's step counter.

        Without accumulation the counter counts updates: update k lies in epoch floor(k / updates_per_epoch).
        With `accumulation` = a micro-batches per update, Keras evaluates the schedule at its micro-batch
        counter (`_iterations`, not `iterations`), so the schedule is sized in micro-batches
        (updates_per_epoch * a per epoch): an update takes the rate of the epoch its last micro-batch lies
        in, as in HessianFlow, which halves the rate between epochs while the accumulation carries over.
        """
        if not updates_per_epoch > 0:
            raise ValueError(f"updates_per_epoch must be > 0, got {updates_per_epoch}")
        _check_accumulation(accumulation)
        rate = self.initial_learning_rate(batch_size)
        if self.schedule == "Benchmark":
            steps_per_epoch = _counter_steps_per_epoch(updates_per_epoch, accumulation)
            return keras.optimizers.schedules.ExponentialDecay(
                rate, decay_steps=BENCHMARK_HALVING_EPOCHS * steps_per_epoch, decay_rate=0.5, staircase=True
            )
        return ConstantLearningRate(rate)

    def optimizer(self, batch_size: int, updates_per_epoch: float, accumulation: int = 1) -> keras.optimizers.SGD:
        """Plain SGD (heavy-ball momentum, no Nesterov, no weight decay) with this setting's schedule; with
        `accumulation` > 1 the gradients of that many micro-batches are averaged into one update (momentum
        and the rate apply per update, the schedule's epochs count micro-batches: see
        `learning_rate_schedule`)."""
        schedule = self.learning_rate_schedule(batch_size, updates_per_epoch, accumulation)
        return keras.optimizers.SGD(learning_rate=schedule, momentum=float(self.momentum),
                                    gradient_accumulation_steps=accumulation if accumulation > 1 else None)


def _check_accumulation(accumulation: int) -> None:
    if isinstance(accumulation, bool) or not isinstance(accumulation, numbers.Integral) or accumulation < 1:
        raise ValueError(f"accumulation must be a whole number of micro-batches per update >= 1, got "
                         f"{accumulation!r} (1: no accumulation; see accumulation_steps)")


def _counter_steps_per_epoch(updates_per_epoch: float, accumulation: int) -> float:
    """Steps of Keras' counter per epoch: micro-batches with accumulation, updates without."""
    steps = updates_per_epoch * accumulation
    # updates_per_epoch() gives (N // m) / a, so the product is a whole number up to rounding; rounding it
    # keeps a staircase boundary from slipping one micro-batch (49.99999 vs 50).
    return float(round(steps)) if abs(steps - round(steps)) < 1e-6 * steps else steps


def paper_settings(
    momentum_sweeps: dict[str, tuple[float, ...]] | None = MOMENTUM_SWEEPS, lr_scale: float = 1.0
) -> list[TrainingSetting]:
    """The lines of the paper's figures: LR and LR/BS without momentum and the Benchmark (Figs 1-10), plus
    the momentum values of `momentum_sweeps` (default: sections 4.1 and 4.2, Figs 11-22; None: none)."""
    settings = [TrainingSetting("LR", 0.0, lr_scale), TrainingSetting("LR/BS", 0.0, lr_scale)]
    settings.append(TrainingSetting.benchmark(lr_scale))
    for schedule, momenta in (momentum_sweeps or {}).items():
        settings += [TrainingSetting(schedule, m, lr_scale) for m in momenta if m != 0.0]
    return settings
