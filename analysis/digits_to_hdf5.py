#!/usr/bin/python3
"""Writes scikit-learn's bundled handwritten digits (1797 8x8 images, 10 classes; shipped with Debian's
python3-sklearn, no download) as an eomlab data file (DESIGN.md §3.3): /X float64 [N, 64] with pixel
values scaled to [0, 1], /y int64 [N] labels.

    analysis/digits_to_hdf5.py results/digits.h5 [--samples N]
"""
import argparse
import pathlib

import h5py
import numpy as np
from sklearn.datasets import load_digits


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path", help="the HDF5 file to write")
    p.add_argument("--samples", type=int, default=0, help="keep only the first N samples (0: all 1797)")
    args = p.parse_args()
    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int64)
    if args.samples > 0:
        x, y = x[: args.samples], y[: args.samples]
    path = pathlib.Path(args.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["X"] = x
        f["y"] = y
        f.attrs["source"] = "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)"
    print(f"{path}: X {x.shape}, y {y.shape}, classes {sorted(set(y.tolist()))}")


if __name__ == "__main__":
    main()
