"""Datasets of the reproductions.

`tfadv.datasets.digits.load_digits`: scikit-learn's bundled 8x8 digits, the offline data of every `demo` profile.
`tfadv.datasets.tfds_data.load_tfds`: tensorflow-datasets with a fast, explained failure when offline.
Import the submodule you need; this package imports nothing heavy.
"""
