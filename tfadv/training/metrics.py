"""The compiled metrics, measured again on adversarial inputs and logged as `adv_<name>`.

Keras keeps one set of compiled metrics per model and computes it on the inputs of `evaluate`: for the
wrappers, the clean inputs. A second set, built from fresh copies of the same metrics, follows the
adversarial inputs: the batch the weights learn from in `fit`, the evaluation attack in `evaluate`. So a
model compiled with `metrics=[AUC()]` logs `adv_auc` in fit, `auc` and `adv_auc` in evaluate, and
`val_auc`, `val_adv_auc` for validation, as a Keras user would expect from the names alone.

The wrappers' own metrics (`adv_loss`, `adv_accuracy`, the clean `accuracy`) follow Keras' conventions too:
unweighted like Keras' `metrics=` (sample and class weights weigh the loss and `weighted_metrics` only), and
with the direction (`_direction`, "up" or "down") that Keras' callbacks read in mode="auto", listed in one
`OwnMetrics` entry of `model.metrics`, because those callbacks look a monitored name up inside such lists only.
"""
from __future__ import annotations

from typing import Any

import keras
from keras.src.trainers.compile_utils import CompileMetrics, MetricsList  # Keras exports no public equivalents

from tfadv import validation

PREFIX = "adv_"


class AdversarialMetrics(CompileMetrics):
    """Keras' CompileMetrics for a model's single output, each metric renamed `adv_<name>` once Keras has
    resolved it (strings such as "accuracy" become metric objects only when built, from the labels' shape)."""

    def build(self, y_true, y_pred) -> None:
        super().build(y_true, y_pred)
        # Keras logs a weighted metric whose name an unweighted one has as weighted_<name>: name it so before
        # the prefix, or its copy would log as weighted_adv_<name> instead of adv_weighted_<name>.
        plain = {metric.name for group in self._flat_metrics if group for metric in group.metrics}
        for group in self._flat_weighted_metrics:
            for metric in group.metrics if group else ():
                if metric.name in plain:
                    metric.name = f"weighted_{metric.name}"
        for metric in self.metrics:
            if not metric.name.startswith(PREFIX):
                metric.name = PREFIX + metric.name


def tracker(name: str, direction: str) -> keras.metrics.Mean:
    """A mean logged as `name`; `direction` ("up": higher is better, "down": lower is) is the attribute
    Keras' MonitorCallback (ModelCheckpoint, EarlyStopping, ReduceLROnPlateau) reads in mode="auto"."""
    metric = keras.metrics.Mean(name=name)
    metric._direction = direction
    return metric


class OwnMetrics(MetricsList):
    """The wrappers' own metrics as one entry of `model.metrics`, the way Keras lists its compiled metrics:
    Keras' callbacks find a monitored metric's direction only inside a CompileMetrics or a MetricsList."""

    def __init__(self, metrics: list[keras.metrics.Metric]) -> None:
        super().__init__(metrics, name="adversarial_model_metrics")

    def result(self) -> dict:
        return {metric.name: metric.result() for metric in self.metrics}


def adversarial_copy(owner: str, compiled: CompileMetrics | None) -> AdversarialMetrics | None:
    """Fresh copies of the compiled metrics (None if none were compiled). A metric object that cannot be
    copied from its config is left out of the copy, with a warning that names it."""
    if compiled is None:
        return None
    metrics = _fresh(owner, compiled._user_metrics)
    weighted = _fresh(owner, compiled._user_weighted_metrics)
    if not metrics and not weighted:
        return None
    return AdversarialMetrics(metrics, weighted, output_names=compiled.output_names)


def _fresh(owner: str, metrics: Any) -> list:
    copies = []
    for metric in keras.tree.flatten(metrics or []):  # the wrappers' model has one output
        if not isinstance(metric, keras.metrics.Metric):
            copies.append(metric)  # a name or a function: Keras makes a new metric object of it when building
            continue
        try:
            copies.append(type(metric).from_config(metric.get_config()))
        except Exception as error:  # a custom metric whose config does not rebuild it
            validation.warn_caller(
                f"{owner}: the compiled metric {metric.name!r} cannot be copied from its config ({error}), so fit "
                f"and evaluate log no {PREFIX}{metric.name} on adversarial inputs: give its class a get_config() "
                "that from_config accepts", validation.TfadvWarning)
    return copies
