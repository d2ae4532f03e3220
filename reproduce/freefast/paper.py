"""The seed paper's numbers (Capaldi & Capozzi 2020, Tables 1-6), in the grid's terms.

Every row is one trained model of the paper: its configuration (method, network, batch size, epochs,
Free's m or Fast's alpha as a multiple of eps) and what the paper reports for it. The 90-epoch Fast
PreActResNet18 row is what the paper reports for 90 epochs; the seed authors' released log (not the paper's
text) collapses from epoch 85 on, so that row is likely epoch 84's, picked before the collapse.
"""
from __future__ import annotations

import pandas as pd

#: alpha as a multiple of eps, so a grid means the same on every dataset: at eps = 8/255, 1.25 eps = 10/255
#: (the paper's working step) and 2 eps = 16/255 (the step that overfits catastrophically).
ALPHA_TEXT = {1.25: "10/255", 2.0: "16/255", 2.5: "20/255"}
CIFAR_EPS = 8 / 255
NETWORK = {"preact_resnet18": "PreActResNet18", "resnet50": "ResNet50"}

CONFIG_COLUMNS = ("method", "architecture", "batch_size", "epochs", "replays", "alpha_ratio")
NUMBER_COLUMNS = ("natural_accuracy", "pgd10_accuracy", "pgd20_accuracy", "pgd50_accuracy", "train_minutes",
                  "avg_epoch_seconds")
ROWS = (
    ("free", "preact_resnet18", 128, 45, 2, None, 0.895, 0.324, 0.297, 0.290, 22, 29.4),
    ("free", "preact_resnet18", 128, 45, 4, None, 0.867, 0.471, 0.457, 0.451, 44, 58.2),
    ("free", "preact_resnet18", 128, 45, 8, None, 0.839, 0.498, 0.486, 0.483, 88, 117),
    ("free", "preact_resnet18", 128, 45, 10, None, 0.821, 0.490, 0.482, 0.479, 108, 143.4),
    ("fast", "preact_resnet18", 128, 45, None, 1.25, 0.847, 0.480, 0.463, 0.450, 21, 28.8),
    ("fast", "preact_resnet18", 256, 45, None, 1.25, 0.850, 0.454, 0.438, 0.434, 20, 25.8),
    ("fast", "preact_resnet18", 128, 45, None, 2.0, 0.856, 0.0, 0.0, 0.0, 21, 28.2),
    ("fast", "preact_resnet18", 256, 45, None, 2.0, 0.87, 0.0, 0.0, 0.0, 20, 26.4),
    ("free", "preact_resnet18", 128, 90, 8, None, 0.845, None, None, 0.485, 176, 117),
    ("fast", "preact_resnet18", 128, 90, None, 1.25, 0.836, None, None, 0.434, 43, 28),
    ("free", "resnet50", 128, 90, 8, None, 0.735, None, None, 0.404, 118, 78.6),
    ("fast", "resnet50", 128, 90, None, 1.25, 0.766, None, None, 0.391, 28.18, 18.78),
)


def table() -> pd.DataFrame:
    """The paper's rows as a DataFrame (missing numbers are NaN)."""
    return pd.DataFrame([dict(zip(CONFIG_COLUMNS + NUMBER_COLUMNS, row)) for row in ROWS])


def label(method: str, replays=None, alpha_ratio=None, **_) -> str:
    """"Free m=8", "Fast α=1.25ε" or "PGD-7": a configuration's name in tables and figures."""
    if method == "free":
        return f"Free m={int(replays)}"
    if method == "fast":
        return f"Fast α={float(alpha_ratio):g}ε"
    return "PGD-7"


def describe(row: dict) -> str:
    """"PreActResNet18 Free m=8, batch 128, 45 epochs": one of the paper's models in words."""
    return (f"{NETWORK[row['architecture']]} {label(**row)}, batch {int(row['batch_size'])}, "
            f"{int(row['epochs'])} epochs")
