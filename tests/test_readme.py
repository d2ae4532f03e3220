"""The README's API example runs as written, and does what its comments say: a README that drifts from
the API is the first thing a new user meets."""
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

README = Path(__file__).resolve().parents[1] / "README.md"


def api_example() -> str:
    section = README.read_text(encoding="utf-8").split("## The API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow(seconds=60)
def test_the_readme_api_example_runs_and_logs_the_names_it_says(capsys):
    code = api_example()
    digits = load_digits()
    # The example's model takes 28 x 28 x 1 images in [0, 1] (MNIST's shape): digits, resized.
    x = tf.image.resize(digits.images[..., None] / 16.0, (28, 28)).numpy().astype("float32")
    y = digits.target
    names = dict(x_train=x[:1000], y_train=y[:1000], x_test=x[1000:1100], y_test=y[1000:1100])
    exec(compile(code, str(README), "exec"), names)

    logged_comment = next(line for line in code.splitlines() if line.startswith("# logs"))
    promised = set(re.findall(r"\b(?:val_)?(?:adv_)?(?:loss|accuracy)\b", logged_comment))
    assert {"adv_loss", "adv_accuracy", "val_accuracy", "val_adv_accuracy"} <= promised
    assert promised <= set(names["model"].history.history), "fit does not log a name the README's comment names"
    assert len(names["stats"]["success"]) == 100  # "per-sample diagnostics"
    assert len(names["result"].broken_by) == 100 and 0.0 <= names["result"].robust_accuracy <= 1.0
    printed = capsys.readouterr().out
    assert "Gradient-masking checks" in printed
    assert np.isfinite(names["result"].robust_accuracy)
