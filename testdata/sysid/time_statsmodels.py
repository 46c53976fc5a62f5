#!/usr/bin/env python3
"""Baseline timings for cross-correlation of a 10^6-sample pair (what `vmmon xcorr` is compared to).

    python3 time_statsmodels.py               # ~1-2 minutes, one core
    python3 time_statsmodels.py --skip-slow   # without (ii), which runs into its 60 s limit

Data: x, y = two independent white N(0,1) series of N = 10^6 samples from
numpy.random.default_rng(SEED), generated in memory. Lags 0..1000 (nlags=1001).
All three methods compute the same thing: the biased (divide by N), mean-removed
cross-correlation r(k) = c_xy(k) / (sigma_x sigma_y), k = 0..1000, positive k = x leads y
(statsmodels: ccf(y, x)[k] = corr(y(t+k), x(t))). Each timing includes demeaning and
normalisation.
  (i)   statsmodels.tsa.stattools.ccf(y, x, adjusted=False, fft=True, nlags=1001)
  (ii)  the same with fft=False (scipy -> np.correlate 'full': all 2N-1 lags, ~10^12
        multiply-adds), run in a child process killed after 60 s
  (iii) direct: np.correlate(concat(y - ybar, zeros(1000)), x - xbar, 'valid') / N / (sx sy),
        exactly the lags 0..1000 (~10^9 multiply-adds)
Median of 5 runs (fewer when a run takes more than 10 s). BLAS pinned to one thread (numpy's
correlate uses BLAS ddot; pocketfft/scipy.fft are single-threaded by default anyway).
"""

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import statistics
import subprocess
import sys
import time

import numpy as np
from statsmodels.tsa.stattools import ccf  # imported up front: not part of the timings

SEED = 20250199
N = 1_000_000
NLAGS = 1001
TIMEOUT = 60.0


def data():
    rng = np.random.default_rng(SEED)
    return rng.standard_normal(N), rng.standard_normal(N)


def sm_ccf(x, y, fft):
    return ccf(y, x, adjusted=False, fft=fft, nlags=NLAGS)


def direct(x, y):
    xd = x - x.mean()
    yd = y - y.mean()
    a = np.concatenate([yd, np.zeros(NLAGS - 1)])
    c = np.correlate(a, xd, "valid") / len(x)
    return c / (np.std(x) * np.std(y))


def cra(x, y, order=10, lags=100):
    """The work of `vmmon impulse --lags 100 --prewhiten 10`: AR fit on the input, both series
    filtered with A(q), cross-correlation of the filtered series scaled to g(k)."""
    from scipy.signal import lfilter
    from statsmodels.tsa.ar_model import AutoReg
    xd = x - x.mean()
    yd = y - y.mean()
    phi = AutoReg(xd, lags=order, trend="n").fit().params
    a = np.concatenate([[1.0], -phi])
    e = lfilter(a, [1.0], xd)[order:]
    h = lfilter(a, [1.0], yd)[order:]
    r = ccf(h, e, adjusted=False, fft=True, nlags=lags + 1)
    return r * np.std(h) / np.std(e)


def timed(fn, runs=5, slow=10.0):
    ts = []
    out = None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
        if ts[-1] > slow:
            break
    return statistics.median(ts), ts, out


def fmt(ts):
    return ", ".join("%.4f" % t for t in ts)


def child_fft_false():
    x, y = data()
    t0 = time.perf_counter()
    sm_ccf(x, y, fft=False)
    print("%.6f" % (time.perf_counter() - t0))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child-fft-false":
        child_fft_false()
        return
    import scipy
    import statsmodels
    print("python %s, numpy %s, scipy %s, statsmodels %s; nproc %d; N = %d, lags 0..%d"
          % (sys.version.split()[0], np.__version__, scipy.__version__,
             statsmodels.__version__, os.cpu_count(), N, NLAGS - 1))
    x, y = data()

    med, ts, r_fft = timed(lambda: sm_ccf(x, y, fft=True))
    print("(i)   statsmodels ccf fft=True : median %.4f s over %d runs [%s]" % (med, len(ts), fmt(ts)))

    med3, ts3, r_dir = timed(lambda: direct(x, y))
    print("(iii) numpy np.correlate direct: median %.4f s over %d runs [%s]" % (med3, len(ts3), fmt(ts3)))
    d = float(np.max(np.abs(r_fft - r_dir)))
    print("      agreement (i) vs (iii): max |diff| = %.2e (max |r| = %.2e)"
          % (d, float(np.max(np.abs(r_dir)))))
    assert d < 1e-12

    med4, ts4, _ = timed(lambda: cra(x, y))
    print("(iv)  CRA impulse, AR(10) prewhitening, M=100 (AutoReg + lfilter + ccf fft): "
          "median %.4f s over %d runs [%s]" % (med4, len(ts4), fmt(ts4)))
    if "--skip-slow" in sys.argv:
        return

    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child-fft-false"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        print("(ii)  statsmodels ccf fft=False: %s s (1 run)" % p.stdout.strip())
    except subprocess.TimeoutExpired:
        print("(ii)  statsmodels ccf fft=False: did NOT finish within %.0f s (killed after %.1f s; "
              "it computes all 2N-1 lags directly, ~%.0e multiply-adds; extrapolated from (iii): "
              "~%.0f s)" % (TIMEOUT, time.perf_counter() - t0, float(N) * N,
                            med3 * (float(N) * N) / (float(N) * NLAGS)))


if __name__ == "__main__":
    main()
