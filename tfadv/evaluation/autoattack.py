"""AutoAttack (Croce & Hein, ICML 2020): a cascade of diverse parameter-free attacks, for Keras models.

Every sample starts robust if the model classifies it correctly; each attack then runs only on the samples
still robust, and a sample is broken as soon as one attack returns a point the model misclassifies. That
point is checked before it counts: one more forward pass on it, its distance to x within eps and its values
within [clip_min, clip_max]. The versions are the reference's (fra31/auto-attack, autoattack.py):

- "standard": APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5,000 queries), 100 iterations each;
- "rand": APGD-CE and APGD-DLR with the gradient averaged over 20 draws (EOT), for randomised models;
- "custom": the `attacks` given, as names or as built tfadv attacks (e.g. smaller budgets for a demo).

With `state_path` the evaluation is resumable: the state file records which samples each stage has finished
and the examples found, and a rerun with the same model settings, attacks and data continues from there.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfadv import geometry, validation
from tfadv.attacks import APGD, FAB, Attack, Square
from tfadv.evaluation import checks, compaction
from tfadv.evaluation.clean import predict_labels
from tfadv.evaluation.data import evaluation_arrays
from tfadv.evaluation.state import CascadeState
from tfadv.evaluation.uncertainty import wilson_interval

VERSIONS = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "rand": ("apgd-ce", "apgd-dlr"),
}
ATTACK_NAMES = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
RAND_EOT_ITER = 20
#: (steps, queries, n_target_classes) of the reference's standard version.
REFERENCE_BUDGET = (100, 5000, 9)
#: Relative slack when checking that an example lies in the eps ball (float32 rounding of x + delta).
BALL_TOLERANCE = 1e-5
#: Square lowering robust accuracy by more than this after the gradient attacks suggests masking (reference).
SQUARE_GAIN_WARNING = 0.002


@dataclasses.dataclass
class AutoAttackResult:
    """What auto_attack found. `broken_by[i]` is "clean" (misclassified without attack), the name of the
    attack that broke sample i, or None (robust). `summary` has one row per stage."""

    robust_accuracy: float
    clean_accuracy: float
    broken_by: np.ndarray
    x_adv: np.ndarray
    summary: list[dict[str, Any]]
    warnings: list[str]
    config: dict[str, Any]

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Wilson interval of `robust_accuracy` over these samples: the sampling noise of the test points
        (about ±3 points on 1,000 near 45%), which a gap to a number measured on other points must exceed."""
        return wilson_interval(int(self.robust.sum()), len(self.broken_by), level)

    @property
    def robust(self) -> np.ndarray:
        """Per-sample bool: correct clean and not broken by any attack."""
        return np.array([b is None for b in self.broken_by])

    def to_markdown(self) -> str:
        from tfadv.experiments.report import markdown_table

        rows = [("clean", "", "", f"{self.clean_accuracy:.2%}", "")]
        rows += [(r["attack"], r["attacked"], r["broken"], f"{r['robust_accuracy']:.2%}", f"{r['seconds']:.1f}")
                 for r in self.summary]
        text = markdown_table(["stage", "samples attacked", "broken", "robust accuracy after", "seconds"], rows)
        spread = ""
        if len(self.broken_by):
            low, high = self.interval()
            spread = f" (95% interval {low:.1%} to {high:.1%})"
        lines = [f"AutoAttack ({self.config['version']}, {self.config['norm']}, eps = {self.config['eps']:g}): "
                 f"robust accuracy **{self.robust_accuracy:.2%}**{spread} on {len(self.broken_by)} samples", "", text]
        lines += [f"- warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def build_attack(name: str, model: keras.Model, *, eps: float, norm: str, from_logits: bool,
                 clip_min: float | None, clip_max: float | None, seed: int | None, steps: int = 100,
                 queries: int = 5000, n_target_classes: int = 9, eot_iter: int = 1,
                 output_index: Any = None) -> Attack:
    """One AutoAttack component by its reference name, with the reference's settings."""
    common = dict(from_logits=from_logits, clip_min=clip_min, clip_max=clip_max, seed=seed,
                  output_index=output_index)
    if name in ("apgd-ce", "apgd-dlr"):
        return APGD(model, eps, norm, steps, loss=name[5:], eot_iter=eot_iter, **common)
    if name == "apgd-t":
        return APGD(model, eps, norm, steps, loss="dlr", targeted=True, n_target_classes=n_target_classes, **common)
    if name in ("fab", "fab-t"):
        return FAB(model, eps, norm, steps, targeted=name == "fab-t", n_target_classes=n_target_classes, **common)
    if name == "square":
        return Square(model, eps, norm, queries, **common)
    raise ValueError(f"auto_attack: unknown attack {name!r}; the names are {ATTACK_NAMES}")


def _attack_name(attack: Attack) -> str:
    return str(getattr(attack, "name", type(attack).__name__.lower()))


def _attack_fingerprint(attack: Attack) -> dict[str, Any]:
    """The attack's settings that change its results (simple public attributes)."""
    keep = (bool, int, float, str, type(None))
    return {"name": _attack_name(attack),
            **{k: v for k, v in sorted(vars(attack).items()) if not k.startswith("_") and isinstance(v, keep)}}


def _resolve_attacks(model, version, attacks, settings: dict[str, Any], budget: dict[str, int]) -> list[Attack]:
    """The cascade's attacks, built and checked before any compute."""
    if version not in ("standard", "rand", "custom"):
        raise ValueError(f"auto_attack: version must be 'standard', 'rand' or 'custom', got {version!r}")
    if version != "custom":
        if attacks is not None:
            raise ValueError(f"auto_attack: attacks=... is only read with version='custom' (version={version!r})")
        eot = RAND_EOT_ITER if version == "rand" else 1
        return [build_attack(n, model, eot_iter=eot, **settings, **budget) for n in VERSIONS[version]]
    if not attacks:
        raise ValueError("auto_attack: version='custom' needs attacks=[...] (names or tfadv attacks)")
    built = []
    for item in attacks:
        attack = build_attack(item, model, **settings, **budget) if isinstance(item, str) else item
        if not isinstance(attack, Attack):
            raise TypeError(f"auto_attack: attacks must be names {ATTACK_NAMES} or tfadv attacks, got {item!r}")
        _check_matches(attack, model, settings)
        built.append(attack)
    names = [_attack_name(a) for a in built]
    if len(set(names)) != len(names):
        raise ValueError(f"auto_attack: attack names must be distinct (they key the summary), got {names}")
    return built


def _check_matches(attack: Attack, model: keras.Model, settings: dict[str, Any]) -> None:
    name = _attack_name(attack)
    if attack.model is not model:
        raise ValueError(f"auto_attack: attack {name} was built for a different model")
    if attack.targeted or getattr(attack, "training", False):
        raise ValueError(f"auto_attack: attack {name} must be untargeted (true labels) and in inference mode")
    for key in ("eps", "norm", "from_logits", "clip_min", "clip_max", "output_index"):
        mine = geometry.canonical_norm(settings[key]) if key == "norm" else settings[key]
        if getattr(attack, key) != mine:
            raise ValueError(f"auto_attack: attack {name} has {key} = {getattr(attack, key)!r}, the evaluation {mine!r}")


def _confirmed(model, x, x_adv, labels, config, batch_size) -> np.ndarray:
    """Per sample: x_adv is misclassified, within eps of x and inside the input range."""
    eps, norm, clip_min, clip_max = (config[k] for k in ("eps", "norm", "clip_min", "clip_max"))
    pred = predict_labels(model, x_adv, batch_size, config["output_index"])
    size = geometry.norm_of(tf.constant(x_adv - x), norm).numpy()
    ok = (pred != labels) & (size <= eps * (1.0 + BALL_TOLERANCE) + 1e-7)
    if clip_min is not None:
        slack = 1e-6 * (clip_max - clip_min)
        axes = tuple(range(1, x.ndim))
        ok &= (x_adv.min(axis=axes) >= clip_min - slack) & (x_adv.max(axis=axes) <= clip_max + slack)
    return ok


def auto_attack(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    eps: float,
    norm: str | int | float,
    version: str = "standard",
    attacks: Sequence[str | Attack] | None = None,
    from_logits: bool = False,
    clip_min: float | None = None,
    clip_max: float | None = None,
    seed: int | None = 0,
    batch_size: int = 256,
    state_path: str | None = None,
    verbose: bool = False,
    steps: int = 100,
    queries: int = 5000,
    n_target_classes: int = 9,
    compact: bool = True,
    output_index: Any = None,
) -> AutoAttackResult:
    """Robust accuracy under the AutoAttack cascade. `steps`, `queries` and `n_target_classes` set the budget
    of attacks given by name (the reference's: 100, 5,000, 9); smaller ones make a cheaper, weaker demo.
    `compact=False` runs every attack whole on every batch (same result, slower: for checking).
    `x`, `y`: arrays, or `x` a batched tf.data.Dataset of (x, y) and `y` left out (read once into memory)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"auto_attack: batch_size must be an integer >= 1, got {batch_size!r}")
    settings = dict(eps=eps, norm=norm, from_logits=from_logits, clip_min=clip_min, clip_max=clip_max, seed=seed,
                    output_index=output_index)
    cascade = _resolve_attacks(model, version, attacks, settings,
                               dict(steps=steps, queries=queries, n_target_classes=n_target_classes))
    x_tf, y_tf = cascade[0]._validated(*evaluation_arrays("auto_attack", x, y))
    x, y_onehot = x_tf.numpy(), y_tf.numpy()
    labels = np.argmax(y_onehot, axis=-1)
    eps, norm = cascade[0].eps, cascade[0].norm
    config = {"version": version, "eps": eps, "norm": norm, "from_logits": bool(from_logits),
              "clip_min": cascade[0].clip_min, "clip_max": cascade[0].clip_max, "seed": seed,
              "output_index": output_index,
              "attacks": [_attack_fingerprint(a) for a in cascade]}
    notes = []
    if version != "custom" and (steps, queries, n_target_classes) != REFERENCE_BUDGET:
        notes.append(f"version={version!r} with steps={steps}, queries={queries}, n_target_classes={n_target_classes}: "
                     f"not the reference budget {REFERENCE_BUDGET}, so not the published protocol")
    if clip_min is None:
        notes.append("no clip_min/clip_max: examples may leave the data's valid range, which the reference never "
                     "does (it clamps to [0, 1]), so this is not comparable to published AutoAttack numbers")
    notes += checks.quick_checks(model, x[:batch_size], from_logits=from_logits, output_index=output_index,
                                randomised_expected=version == "rand")
    state = CascadeState.open(state_path, config, model, x, labels, [_attack_name(a) for a in cascade])
    if not state.started:
        state.start(predict_labels(model, x, batch_size, output_index) == labels)
    with warnings.catch_warnings():  # eps's scale was judged once, on the first attack
        warnings.simplefilter("ignore", validation.EpsScaleWarning)
        for stage, attack in enumerate(cascade):
            _run_stage(stage, attack, model, x, y_onehot, state, batch_size, compact, verbose, config)
    if any(not isinstance(attack, Square) for attack in cascade):
        problem = checks.unmeasured_robustness(model, x, labels, state.robust, from_logits=from_logits,
                                               loss_path="logit", batch_size=batch_size, output_index=output_index)
        if problem:
            notes.append(problem)
    result = _result(state, x, config, notes)
    for note in result.warnings:
        validation.warn_caller(f"auto_attack: {note}", validation.EvaluationWarning)
    return result


def _run_stage(stage, attack, model, x, y_onehot, state, batch_size, compact, verbose, config) -> None:
    """One attack on the samples still robust that it has not attacked yet, a window of batches at a time
    (compacted inside when the attack runs in segments); the state is saved as it goes."""
    name = _attack_name(attack)
    todo = np.flatnonzero(state.robust & ~state.done[stage])
    labels = np.argmax(y_onehot, axis=-1)
    segmented = compact and compaction.supports_segments(attack)
    window = batch_size * compaction.WINDOW_BATCHES if segmented else batch_size
    started = time.perf_counter()
    # A stage over a test set can take an hour on a GPU: with verbose, show its samples as windows finish.
    progress = (keras.utils.Progbar(len(todo), unit_name="sample", stateful_metrics=["robust accuracy"])
                if verbose and len(todo) else None)
    for start in range(0, len(todo), window):
        ids = todo[start : start + window]
        if segmented:
            claimed, x_adv = compaction.run_compacted(attack, x[ids], y_onehot[ids], ids, batch_size=batch_size)
        else:
            x_adv, stats = attack(x[ids], y_onehot[ids], sample_ids=ids, return_stats=True)
            x_adv, claimed = np.asarray(x_adv), np.asarray(stats["success"])
        broken = _confirmed(model, x[ids], x_adv, labels[ids], config, batch_size)
        state.record(stage, ids, broken, x_adv, unconfirmed=int(np.sum(claimed & ~broken)))
        state.save(force=False)
        if progress is not None:
            progress.add(len(ids), [("robust accuracy", float(np.mean(state.robust)))])
    state.finish_stage(stage, seconds=time.perf_counter() - started)
    state.save(force=True)
    if verbose:
        print(f"{name}: {int(np.sum(state.broken_at == stage))} broken, robust accuracy "
              f"{np.mean(state.robust):.2%} ({state.seconds[stage]:.1f} s)")


def _result(state: CascadeState, x: np.ndarray, config: dict[str, Any], notes: list[str]) -> AutoAttackResult:
    names = state.stage_names
    broken_by = np.array([None] * len(x), dtype=object)
    broken_by[state.broken_at == CascadeState.CLEAN] = "clean"
    summary, remaining = [], int(np.sum(state.broken_at != CascadeState.CLEAN))
    for stage, name in enumerate(names):
        hit = state.broken_at == stage
        broken_by[hit] = name
        summary.append({"attack": name, "attacked": remaining, "broken": int(hit.sum()),
                        "robust_accuracy": float(np.mean(state.broken_at > stage)) if len(x) else float("nan"),
                        "unconfirmed": int(state.unconfirmed[stage]), "seconds": float(state.seconds[stage])})
        remaining -= int(hit.sum())
    notes = list(notes)
    for row in summary:
        if row["unconfirmed"]:
            notes.append(f"{row['attack']} reported {row['unconfirmed']} fooled samples whose examples did not "
                         "pass the check (misclassified, within eps, inside the range); they count as robust")
    gradient_stages = [r for r in summary if r["attack"] != "square"]
    square = [r for r in summary if r["attack"] == "square"]
    if gradient_stages and square and square[0]["broken"] > SQUARE_GAIN_WARNING * len(x):
        broken = square[0]["broken"]
        notes.append(f"Square broke {broken} sample{'s' if broken > 1 else ''} ({broken / len(x):.1%} of {len(x)}; the "
                     f"reference warns above {SQUARE_GAIN_WARNING:.1%}) that the gradient attacks had left robust: their "
                     "gradients mislead them there (gradient masking) or their budget is too small; run "
                     "tfadv.evaluation.check_gradient_masking, then more steps and restarts or an adaptive attack")
    x_adv = x.copy()
    x_adv[state.broken_at >= 0] = state.x_found[state.broken_at >= 0]
    return AutoAttackResult(
        robust_accuracy=float(np.mean(state.robust)) if len(x) else float("nan"),
        clean_accuracy=float(np.mean(state.broken_at != CascadeState.CLEAN)) if len(x) else float("nan"),
        broken_by=broken_by, x_adv=x_adv, summary=summary, warnings=notes, config=config,
    )
