"""Download and prepare the tensorflow-datasets the paper profiles use, for copying to offline machines.

Run on a machine with internet, from the repository root:

    python data/prepare.py                       # everything below into data/tfds (~5.5 GB of downloads)
    python data/prepare.py mnist cifar10         # only these (names as listed by --list)
    python data/prepare.py --data-dir /scratch/tfds --clean-downloads

Then copy the data dir (or just its dataset folders) to the offline machine and point runners at it with
--data-dir or $TFDS_DATA_DIR; tfadv reads prepared data without touching the network.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

# CIFAR-10-C's noise corruptions (speckle_noise is one of its four "extra" corruptions), severities 1..5.
NOISE_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")

DATASETS = {
    "mnist": ["mnist"],                                   # efficient, batchsize, batchnorm
    "fashion_mnist": ["fashion_mnist"],                   # batchsize
    "cifar10": ["cifar10"],                               # freefast, batchsize, batchnorm
    "cifar10_1": ["cifar10_1/v4", "cifar10_1/v6"],        # batchnorm (CIFAR-10.1)
    # All 20 configs come from one 2.9 GB CIFAR-10-C.tar, downloaded once into DATA_DIR/downloads.
    "cifar10_corrupted": [f"cifar10_corrupted/{c}_{s}" for c in NOISE_CORRUPTIONS for s in range(1, 6)],
    "imagenet_v2": ["imagenet_v2/matched-frequency"],     # minibatch (1.26 GB)
}


def prepare(name: str, data_dir: str) -> None:
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        print(f"{name}: already prepared in {builder.data_dir}")
        return
    start = time.monotonic()
    print(f"{name}: downloading and preparing into {data_dir} ...", flush=True)
    builder.download_and_prepare(download_dir=os.path.join(data_dir, "downloads"))
    print(f"{name}: done in {time.monotonic() - start:.0f} s -> {builder.data_dir}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", metavar="DATASET",
                        help=f"datasets to prepare (default: all of {', '.join(DATASETS)})")
    parser.add_argument("--data-dir", default=os.environ.get("TFDS_DATA_DIR", os.path.join("data", "tfds")),
                        help="tfds data_dir to prepare into (default: $TFDS_DATA_DIR or data/tfds)")
    parser.add_argument("--clean-downloads", action="store_true",
                        help="delete DATA_DIR/downloads (archives and extracted files) once everything is prepared")
    parser.add_argument("--list", action="store_true", help="list the datasets and tfds configs, then exit")
    args = parser.parse_args(argv)

    if args.list:
        for key, names in DATASETS.items():
            print(f"{key}: {' '.join(names)}")
        return 0
    unknown = sorted(set(args.datasets) - set(DATASETS))
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {list(DATASETS)}")
    os.makedirs(args.data_dir, exist_ok=True)
    for key in args.datasets or list(DATASETS):
        for name in DATASETS[key]:
            prepare(name, args.data_dir)
    if args.clean_downloads:
        shutil.rmtree(os.path.join(args.data_dir, "downloads"), ignore_errors=True)
    print(f"Prepared data is in {os.path.abspath(args.data_dir)}; see data/README.md to use it offline.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
