"""One training run of the paper: Madry's CNN, PGD-kappa adversarial batches (fresh or from a stale queue),
Adam, and the attacker panel logged along the way; plus the attacks and measurements every cell shares."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from reproduce.efficient.profiles import STEP_FACTOR, Profile
from tfadv.experiments import Run, atomic
from tfadv.training import TimedBackupAndRestore

#: Names the train_step may log the accuracy on the batch it trained on under (the engine is renaming them).
TRAINED_BATCH_ACCURACY = ("adv_accuracy", "adversarial_accuracy", "train_adversarial_accuracy")
NATURAL = "natural"
PANEL = "panel"  # PGD-kappa with the paper's alpha = 2.5 eps / kappa
REFERENCE = "reference"  # mnist_challenge's evaluation attack: PGD-40 of 0.01 at eps 0.3


def step_size(eps: float, kappa: int) -> float:
    """The paper's alpha = 2.5 eps / kappa: kappa equal steps that can cross the ball from a random start."""
    return STEP_FACTOR * eps / kappa


def pgd(model, p: Profile, steps: int, size: float, seed: int):
    """An L-inf PGD attack with random start on a logits model, inputs in [0, 1]."""
    from tfadv.attacks import PGD

    return PGD(model, eps=p.eps, norm="inf", steps=steps, step_size=size, rand_init=True, from_logits=True,
               clip_min=0.0, clip_max=1.0, seed=seed)


def attacks(model, p: Profile, kappas, seed: int, reference: bool = True) -> dict[tuple[str, int], Any]:
    """{(attack, kappa): attack}: PGD-kappa of the panel, and mnist_challenge's evaluation attack."""
    made = {(PANEL, k): pgd(model, p, k, step_size(p.eps, k), seed) for k in kappas}
    if reference:
        made[(REFERENCE, p.eval_steps)] = pgd(model, p, p.eval_steps, p.eval_step_size, seed)
    return made


def attacked_copy(run: Run, kappas, seed: int) -> tuple[keras.Model, dict[tuple[str, int], Any]]:
    """Madry's CNN, made once per process, with `attacks(copy, p, kappas, seed)` on it, each made once per
    process and (attack, kappa, seed). A cell copies its net's weights in (copy_weights) before measuring,
    so an attack is traced once per process rather than once per cell: the traces were a fifth of a demo
    strength cell (measured). Make it before the cell's own net: building the copy draws initial weights
    from Keras' global generator, which the cell's net then reseeds. The copy computes what the net computes
    (same layers, same weights, inference mode): test_efficient checks it."""
    p = run.profile
    net = run.cached(("attacked copy",), lambda: base_model(p, seed))
    made = {(PANEL, k): run.cached(("attack on the copy", PANEL, k, seed),
                                   lambda k=k: pgd(net, p, k, step_size(p.eps, k), seed)) for k in kappas}
    made[(REFERENCE, p.eval_steps)] = run.cached(("attack on the copy", REFERENCE, p.eval_steps, seed),
                                                 lambda: pgd(net, p, p.eval_steps, p.eval_step_size, seed))
    return net, made


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Layer by layer, in order: `target` is the same architecture (its generated layer names differ)."""
    for source_layer, target_layer in zip(source.layers, target.layers, strict=True):
        target_layer.set_weights(source_layer.get_weights())


def craft(attack, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Adversarial examples for a whole set; image i's random start is keyed on i, whatever the batching."""
    ids = np.arange(len(x))
    return np.concatenate([np.asarray(attack(x[i:i + batch_size], y[i:i + batch_size],
                                             sample_ids=ids[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])


def mean_loss(model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Mean cross-entropy of a logits model in inference mode (the loss of Fig 3)."""
    xent = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    total = sum(float(xent(y[i:i + batch_size], model(x[i:i + batch_size], training=False)))
                for i in range(0, len(x), batch_size))
    return total / len(x)


def measure(model, x: np.ndarray, y: np.ndarray, made: dict, split: str, keep: dict | None = None) -> list[dict]:
    """Accuracy and loss on natural images and under each attack: one row per (attack, metric). With `keep`
    (a dict), the crafted examples are stored in it under example_key(attack, kappa)."""
    from tfadv.evaluation.clean import accuracy

    rows = []
    for (name, kappa), attack in [((NATURAL, 0), None), *made.items()]:
        x_eval = x if attack is None else craft(attack, x, y)
        if keep is not None and attack is not None:
            keep[example_key(name, kappa)] = x_eval
        base = {"split": split, "attack": name, "attack_kappa": kappa, "n": len(x)}
        rows += [{**base, "metric": "accuracy", "value": accuracy(model, x_eval, y)},
                 {**base, "metric": "loss", "value": mean_loss(model, x_eval, y)}]
    return rows


def example_key(attack: str, kappa: int) -> str:
    """The name of an attack's adversarial test images in a strength cell's examples file."""
    return f"{attack}_{int(kappa)}"


def save_examples(path: Path, examples: dict[str, np.ndarray]) -> None:
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a file object: np.savez would add its own suffix to a name
            np.savez_compressed(handle, **examples)


def load_examples(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as stored:
        return {name: stored[name] for name in stored.files}


# ------------------------------------------------------------------------------------------ models
def base_model(p: Profile, seed: int) -> keras.Model:
    from tfadv.models.mnist import madry_cnn

    keras.utils.set_random_seed(seed)
    return madry_cnn(p.input_shape, num_classes=10, logits=True, init=p.init)


def compile_model(model: keras.Model, p: Profile) -> keras.Model:
    """Adam(lr, epsilon) on the cross-entropy reduced as mnist_challenge does (a sum over the batch)."""
    model.compile(optimizer=keras.optimizers.Adam(p.learning_rate, epsilon=p.adam_epsilon),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=p.loss_reduction),
                  metrics=["accuracy"])
    return model


def adversarial_model(p: Profile, kappa: int, seed: int, staleness: int | None = None,
                      batch_size: int | None = None, compile: bool = True) -> keras.Model:
    """Madry's CNN with a PGD-kappa train_step: fresh batches, or from a queue of `staleness` batches."""
    from tfadv import training

    base = base_model(p, seed)
    # eval_steps=0: the attacker panel is measured by PanelLogger with tfadv.attacks.PGD.
    attack = dict(eps=p.eps, steps=kappa, step_size=step_size(p.eps, kappa), norm="inf", rand_init=True,
                  clip_min=0.0, clip_max=1.0, eval_steps=0, seed=seed)
    if staleness is None:
        model = training.PGDAdversarialModel(base.inputs[0], base.outputs[0], **attack)
    else:
        model = training.StaleAdversarialModel(base.inputs[0], base.outputs[0], staleness=staleness,
                                               batch_size=batch_size or p.batch_size, **attack)
    return compile_model(model, p) if compile else model


def _logged(logs: dict, names: tuple[str, ...]) -> float:
    for name in names:
        if name in logs:
            return float(logs[name])
    raise KeyError(f"the train_step logged none of {names}; it logged {sorted(logs)}")


class PanelLogger(keras.callbacks.Callback):
    """Every 'epoch' (= log_every steps): natural and adversarial accuracy and loss on fixed train and test
    images against each attacker, and for a stale queue what the train_step saw. Its rows are kept on disk,
    so a resumed run keeps the points logged before the interruption."""

    def __init__(self, samples: dict, made: dict, log_every: int, path: Path, stale: bool, net: keras.Model | None):
        super().__init__()
        self.samples, self.made, self.log_every, self.path, self.stale = samples, made, log_every, path, stale
        self.net = net  # the copy the attacks of `made` are bound to (None: the trained model itself)
        self.rows = pd.read_csv(path).to_dict("records") if path.is_file() else []
        self.resumed_at = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.resumed_at is None:  # a resumed run redoes this epoch: drop anything logged from it on
            self.rows = [r for r in self.rows if r["epoch"] < epoch]
            self.resumed_at = epoch

    def on_epoch_end(self, epoch, logs=None):
        base = {"epoch": epoch, "step": (epoch + 1) * self.log_every}
        measured = self.model if self.net is None else self.net
        if measured is not self.model:
            copy_weights(self.model, measured)
        for split, (x, y) in self.samples.items():
            self.rows += [{**base, **row} for row in measure(measured, x, y, self.made, split)]
        if self.stale:  # what the train_step measured on the (stale) batches it trained on, and their age
            self.rows += [{**base, "split": "train", "attack": "stale", "attack_kappa": 0, "metric": "accuracy",
                           "value": _logged(logs, TRAINED_BATCH_ACCURACY)},
                          {**base, "split": "train", "attack": "stale", "attack_kappa": 0,
                           "metric": "measured_staleness", "value": float(logs["staleness"])}]
        atomic.write_csv(pd.DataFrame(self.rows), self.path)


def log_samples(data: dict, p: Profile, count: int, seed: int, splits=("train", "test")) -> dict:
    """Fixed images of each split (the same for every model of a seed) for the logged curves."""
    rng = np.random.default_rng(seed)
    picked = {}
    for split in ("train", "test"):  # both drawn, whatever is kept, so a split's images never depend on `splits`
        x, y = data[split]
        ids = np.sort(rng.choice(len(x), size=min(count, len(x)), replace=False))
        if split in splits:
            picked[split] = (x[ids], y[ids])
    return picked


def train_and_log(run: Run, cell: dict, data: dict, *, model, steps: int, log_every: int, logged: dict,
                  batch_size: int, seed: int, callbacks=(), splits=("train", "test"),
                  net: keras.Model | None = None) -> tuple[keras.Model, list[dict], float]:
    """fit `model` for `steps` steps, the `logged` attacks ({(name, kappa): attack on `net`, or on `model`
    when `net` is None}) measured every `log_every` steps on images of `splits`, `model`'s weights copied
    into `net` first; resumable from run.work_dir.

    Returns (model, logged rows, training seconds of this invocation).
    """
    from tfadv.datasets.pipeline import training_stream

    p = run.profile
    work = run.work_dir(cell)
    samples = log_samples(data, p, run.capped(p.log_images), seed, splits)
    stale = getattr(model, "staleness", None) is not None
    logger = PanelLogger(samples, logged, log_every, work / "log.csv", stale=stale, net=net)
    backup = TimedBackupAndRestore(str(work / "backup"))
    x, y = data["train"]
    # A resumed training goes on with the batch the uninterrupted one trained on next.
    batches = training_stream(x, y, batch_size, seed=seed, drop_remainder=True,
                              batches_done=backup.resume_epoch() * log_every)
    started = time.process_time()
    model.fit(batches, epochs=steps // log_every, steps_per_epoch=log_every, callbacks=[logger, backup, *callbacks],
              shuffle=False, verbose=2 if run.show_progress else 0)
    return model, logger.rows, time.process_time() - started
