"""Datasets of the reproductions.

`tfadv.datasets.digits.load_digits`: scikit-learn's bundled 8x8 digits, the offline data of every `demo` profile.
`tfadv.datasets.tfds_data.load_tfds`: tensorflow-datasets with a fast, explained failure when offline.
Import the submodule you need; this package imports nothing heavy.
"""
from __future__ import annotations

import os
from pathlib import Path

#: The checkout's data/tfds (an editable install); data/README.md says how to fill it offline.
CHECKOUT_DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "tfds"


def default_data_dir() -> str | None:
    """Where prepared datasets live, whatever the current directory: $TFDS_DATA_DIR if set, else the
    checkout's data/tfds if this is a checkout, else None (tensorflow-datasets' own default)."""
    if os.environ.get("TFDS_DATA_DIR"):
        return os.environ["TFDS_DATA_DIR"]
    if (CHECKOUT_DATA_DIR.parent / "README.md").is_file():
        return str(CHECKOUT_DATA_DIR)
    return None
