#!/usr/bin/env python3
"""Baseline for `vmmon fit`: the same ARX least squares with numpy, on the same CSV.

    python3 benches/arx_numpy.py FILE.csv [NA NB NK]     # default ARX(20,17,50), columns u, y

Loads the columns with pandas (not timed), then times what `vmmon fit` computes: centring,
the regressor matrix Φ (rows t0..N-1, t0 = max(na, nk+nb-1)), and `numpy.linalg.lstsq`
(LAPACK gelsd) for θ. Median of 3 runs, BLAS on one thread to match vmmon's one core. Prints
θ's first values so that the two can be compared.
"""
import os

for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = "1"

import statistics
import sys
import time

import numpy as np
import pandas as pd


def fit(u, y, na, nb, nk):
    u = u - u.mean()
    y = y - y.mean()
    n = len(y)
    t0 = max(na, nk + nb - 1)
    rows = np.arange(t0, n)
    cols = [-y[rows - i] for i in range(1, na + 1)] + [u[rows - nk - j] for j in range(nb)]
    phi = np.column_stack(cols)
    theta, *_ = np.linalg.lstsq(phi, y[rows], rcond=None)
    return theta


def main():
    path = sys.argv[1]
    na, nb, nk = (int(a) for a in sys.argv[2:5]) if len(sys.argv) >= 5 else (20, 17, 50)
    df = pd.read_csv(path, usecols=["u", "y"])
    u, y = df["u"].to_numpy(float), df["y"].to_numpy(float)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        theta = fit(u, y, na, nb, nk)
        times.append(time.perf_counter() - t)
    print(f"numpy lstsq ARX({na},{nb},{nk}) on {len(y)} samples: median "
          f"{statistics.median(times):.3f} s over 3 runs {['%.3f' % t for t in times]}")
    print("a1..a3 =", theta[:3])


if __name__ == "__main__":
    main()
