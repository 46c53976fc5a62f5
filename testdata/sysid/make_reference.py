#!/usr/bin/env python3
"""Reference datasets and figures for vmmon's system-identification commands.

Run from anywhere:  python3 make_reference.py
Everything is written next to this script; a rerun with the same package versions reproduces
every file byte for byte (checked: `sha256sum *.csv selfcheck.txt` identical over reruns,
including with a different caller thread environment; BLAS is pinned to one thread below).

CONVENTIONS (the Rust implementation is to be tested against these to 1e-9 relative)
-------------------------------------------------------------------------------
Files
  * CSV, one header row, comma separated, no quoting needed (no field holds a comma or quote),
    LF line ends (as vmmon itself writes), final line ends with LF.
  * `time`: 1-second steps starting at T0 = 1795430000.0, written with 6 decimals ("%.6f").
  * Floating values: Python repr(float) (shortest string that round-trips exactly, e.g.
    "0.123", "-1.5e-05"). The counter `bytes_total` is an integer, written as an integer.
    An empty cell means "no value" (row 0 of counters_rates.csv).
  * Dataset values are QUANTIZED to 6 decimals (q(x) = np.round(x, 6)) when generated, so the
    4000-row files stay under ~200 KB: inputs are quantized before the outputs are computed
    from them, and each output is quantized after (|rounding| <= 5e-7, far below the noise;
    y(t) = u(t-7) in delay.csv stays exact). Reference figures use the quantized values.
  * Every figure below is computed from the values READ BACK from the dataset CSVs (the
    script asserts that they round-trip exactly).

Data sets (seeds in SEEDS below, numpy.random.default_rng(seed), PCG64)
  white.csv   N=2000: u ~ N(3, 2^2), y ~ N(-1, 0.5^2), independent white.
  delay.csv   N=1000: v = N+7 white N(0,1) values; u(t) = v(t+7), y(t) = v(t) = u(t-7)
              exactly for every t (y's first 7 values are u's pre-history).
  fir.csv     N=4000: w white N(0,1); x(0)=0, x(s) = 0.8 x(s-1) + w(s); the first 500 x
              are burn-in and dropped, the next 9 are pre-history (u(-9..-1)), then
              u(0..N-1). y(t) = sum_{k=0}^{9} g_k u(t-k) + e(t), e ~ N(0, 0.1^2), using the
              pre-history so y is fully defined; g = [0,0,0.5,1.0,0.8,0.4,0.2,0.1,0.05,0]
              (delay 2). The true g is in fir_true_g.csv (lag,g), g_k = 0 for k >= 10.
  miso.csv    N=4000: u1, u2 white N(0,1) independent (9 values of pre-history each),
              y(t) = 1.0 u1(t-1) + 0.5 u1(t-2) - 0.7 u2(t-3) + e(t), e ~ N(0, 0.05^2).
              True responses in miso_true_g.csv (lag,g_u1,g_u2), lags 0..9.
  counters.csv N=300: bytes_total(0) = 123456789, bytes_total(i) = bytes_total(i-1) + d(i),
              d ~ Poisson(5000); load(0) = 2.0, load(i) = load(i-1) + N(0, 0.05^2).
              counters_rates.csv (time,bytes_per_s): row i>=1 holds
              (total[i]-total[i-1])/(time[i]-time[i-1]); row 0 has an empty bytes_per_s.

Cross-covariance / cross-correlation (xcorr_{white,delay,fir}.csv: lag,xcov,xcorr,bound)
  Max lag L = 50, rows for lags -L..L. Means removed (full-series means); biased estimator,
  divide by N (the full length) at EVERY lag:
      c_uy(k)  = (1/N) sum_{t=0}^{N-1-k} (u(t)-ubar)(y(t+k)-ybar)      k >= 0
      c_uy(-k) = (1/N) sum_{t=0}^{N-1-k} (u(t+k)-ubar)(y(t)-ybar)      k >= 0
  POSITIVE LAG MEANS u LEADS y: y(t) = u(t-7) peaks at k = +7.
      r_uy(k) = c_uy(k) / (sigma_u sigma_y), sigma = biased (ddof=0) standard deviation.
      bound   = 2.58 / sqrt(N)   (99 % band for white noise), same on every row.
  Computed twice: directly from the formula (numpy element-wise products, math.fsum sums),
  and with statsmodels.tsa.stattools.ccovf/ccf(adjusted=False). statsmodels' ccf(x, y)[k]
  = corr(x(t+k), y(t)), so c_uy(k) = ccovf(y, u)[k] and c_uy(-k) = ccovf(u, y)[k]
  (verified below on delay.csv). The direct figures are the ones written.
  acf_fir_u.csv (lag,acov,acf), lags 0..L: c_uu(k) as above, acf = c_uu(k)/c_uu(0); checked
  against statsmodels acovf(adjusted=False, fft=False) and acf(adjusted=False, fft=False).

FIR least squares (impulse_fir_ls.csv: lag,g,sd,step; impulse_miso_ls.csv)
  u and y mean-removed first (full-series means). M = 20: parameters g_0..g_M; regression
  rows t = M..N-1 (N-M rows); row t of Phi = [u(t), u(t-1), ..., u(t-M)], target y(t); no
  intercept. g from statsmodels OLS (written), checked against numpy.linalg.lstsq.
      sd = sqrt(diag(s2 (Phi^T Phi)^-1)), s2 = RSS / (n_rows - n_params)   (OLS bse)
      step(k) = sum_{j=0}^{k} g_j
  MISO: M = 10 per input, regressors ordered u1 lags 0..M then u2 lags 0..M (22 parameters),
  rows t = M..N-1; columns lag,g_u1,sd_u1,g_u2,sd_u2.

Correlation analysis with AR prewhitening (impulse_fir_cra.csv: lag,g,bound,step)
  M = 20, AR order n = 10.
  (a) remove the means of u and y;
  (b) fit u(t) = phi_1 u(t-1) + ... + phi_n u(t-n) + eps(t) by least squares over
      t = n..N-1, no intercept (statsmodels AutoReg(u, lags=n, trend='n'); written; checked
      against numpy lstsq) -> impulse_fir_cra_ar.csv (i,phi), i = 1..n;
  (c) filter both with A(q) = 1 - phi_1 q^-1 - ... - phi_n q^-n for t = n..N-1 (N-n samples):
      eps(t) = u(t) - sum_i phi_i u(t-i),  eta(t) = y(t) - sum_i phi_i y(t-i);
  (d) g(k) = c_eps,eta(k) / c_eps,eps(0), k = 0..M, c = the biased cross-covariance above
      applied to the filtered series (their own means removed, divide by N-n);
  (e) bound = 2.58 sqrt(c_eta,eta(0) / c_eps,eps(0)) / sqrt(N-n), same on every row.
  impulse_fir_cra_n0.csv (lag,g,bound,step): no prewhitening, g(k) = c_uy(k)/c_uu(0),
  bound = 2.58 sqrt(c_yy(0)/c_uu(0)) / sqrt(N).

Self-check figures are printed and written to selfcheck.txt.
"""

import math
import os
import sys

# Single-threaded BLAS: OpenBLAS' threaded kernels change summation order, which flips last
# bits of the OLS figures between runs with different thread counts. Must precede numpy import.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import numpy as np
import scipy
import statsmodels
import statsmodels.api as sm
from statsmodels.tsa.ar_model import AutoReg
from statsmodels.tsa.stattools import acf, acovf, ccf, ccovf

HERE = os.path.dirname(os.path.abspath(__file__))
T0 = 1795430000.0
L = 50                      # max lag for xcorr / acf
Z99 = 2.58                  # 99 % two-sided normal quantile, as used by vmmon
SEEDS = {"white": 20250101, "delay": 20250102, "fir": 20250103, "miso": 20250104,
         "counters": 20250105}
FIR_G = [0.0, 0.0, 0.5, 1.0, 0.8, 0.4, 0.2, 0.1, 0.05, 0.0]
PRE = 9                     # samples of input pre-history so y is defined from t = 0

LOG = []


def log(msg):
    print(msg)
    LOG.append(msg)


# ---------------------------------------------------------------- CSV in/out
def fmt(v):
    if v is None:
        return ""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return repr(float(v))


def fmt_time(t):
    return "%.6f" % t


def write_csv(name, header, columns, time_col=None):
    """columns: list of sequences (same length). time_col: index of a column to write as %.6f."""
    n = len(columns[0])
    assert all(len(c) == n for c in columns)
    lines = [",".join(header)]
    for i in range(n):
        cells = []
        for j, c in enumerate(columns):
            cells.append(fmt_time(c[i]) if j == time_col else fmt(c[i]))
        lines.append(",".join(cells))
    path = os.path.join(HERE, name)
    with open(path, "w", newline="") as f:
        f.write("\n".join(lines) + "\n")
    size = os.path.getsize(path)
    assert size < 200_000, (name, size)
    return path


def read_csv(name):
    with open(os.path.join(HERE, name), newline="") as f:
        rows = f.read().split("\n")
    assert rows[-1] == ""
    header = rows[0].split(",")
    data = [r.split(",") for r in rows[1:-1]]
    out = {}
    for j, h in enumerate(header):
        out[h] = np.array([float(r[j]) if r[j] != "" else np.nan for r in data])
    return out


def q(x):
    """Quantize to 6 decimals (keeps 4000-row files under ~200 KB). np.round = rint(x*1e6)/1e6,
    the double nearest k/10^6, so repr() prints at most 6 decimals."""
    return np.round(np.asarray(x, dtype=float), 6)


def times(n):
    return [T0 + i for i in range(n)]


def write_dataset(name, cols):
    """cols: dict name -> array, without time. Writes, reads back, asserts exact round trip."""
    n = len(next(iter(cols.values())))
    header = ["time"] + list(cols)
    write_csv(name, header, [times(n)] + [list(v) for v in cols.values()], time_col=0)
    back = read_csv(name)
    assert np.array_equal(back["time"], np.array(times(n)))
    for k, v in cols.items():
        assert np.array_equal(back[k], np.asarray(v, dtype=float)), (name, k)
    return back


# ---------------------------------------------------------------- estimators (direct)
def fsum_mean(x):
    return math.fsum(x) / len(x)


def xcov_direct(u, y, lags):
    """Biased cross-covariance c_uy(k), positive k = u leads y; sums by math.fsum."""
    n = len(u)
    assert len(y) == n
    ud = u - fsum_mean(u)
    yd = y - fsum_mean(y)
    out = []
    for k in lags:
        if k >= 0:
            s = math.fsum(ud[: n - k] * yd[k:])
        else:
            m = -k
            s = math.fsum(ud[m:] * yd[: n - m])
        out.append(s / n)
    return np.array(out)


def rel_err(a, b):
    """max |a-b| / max |b| (scale-relative) and max elementwise |a-b|/|b|."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    d = np.abs(a - b)
    scale = np.max(np.abs(b))
    elem = np.max(d / np.where(b == 0, 1.0, np.abs(b)))
    return float(np.max(d) / scale), float(elem)


def check(name, a, b, tol):
    scaled, elem = rel_err(a, b)
    log("  %-58s max|diff|/max|ref| = %.2e   max elementwise rel = %.2e" % (name, scaled, elem))
    assert scaled <= tol, (name, scaled, tol)
    return scaled


# ---------------------------------------------------------------- data sets
def make_white():
    rng = np.random.default_rng(SEEDS["white"])
    n = 2000
    u = q(3.0 + 2.0 * rng.standard_normal(n))
    y = q(-1.0 + 0.5 * rng.standard_normal(n))
    return write_dataset("white.csv", {"u": u, "y": y})


def make_delay():
    rng = np.random.default_rng(SEEDS["delay"])
    n, d = 1000, 7
    v = q(rng.standard_normal(n + d))
    u = v[d:]          # u(t) = v(t+7)
    y = v[:n]          # y(t) = v(t) = u(t-7)
    assert np.array_equal(y[d:], u[: n - d])
    return write_dataset("delay.csv", {"u": u, "y": y})


def make_fir():
    rng = np.random.default_rng(SEEDS["fir"])
    n, burn = 4000, 500
    w = rng.standard_normal(burn + PRE + n)
    x = np.empty_like(w)
    prev = 0.0
    for s in range(len(w)):
        prev = 0.8 * prev + w[s]
        x[s] = prev
    ux = q(x[burn:])                 # ux[j] = u(j - PRE), length PRE + n
    e = 0.1 * rng.standard_normal(n)
    y = np.zeros(n)
    for k, gk in enumerate(FIR_G):   # fixed summation order k = 0..9, then + e
        y = y + gk * ux[PRE - k: PRE - k + n]
    y = q(y + e)
    u = ux[PRE:]
    write_csv("fir_true_g.csv", ["lag", "g"], [list(range(len(FIR_G))), FIR_G])
    return write_dataset("fir.csv", {"u": u, "y": y})


def make_miso():
    rng = np.random.default_rng(SEEDS["miso"])
    n = 4000
    u1x = q(rng.standard_normal(PRE + n))
    u2x = q(rng.standard_normal(PRE + n))
    e = 0.05 * rng.standard_normal(n)
    s1 = lambda k: u1x[PRE - k: PRE - k + n]
    s2 = lambda k: u2x[PRE - k: PRE - k + n]
    y = q(1.0 * s1(1) + 0.5 * s1(2) - 0.7 * s2(3) + e)
    g1 = [0.0] * 10
    g2 = [0.0] * 10
    g1[1], g1[2], g2[3] = 1.0, 0.5, -0.7
    write_csv("miso_true_g.csv", ["lag", "g_u1", "g_u2"], [list(range(10)), g1, g2])
    return write_dataset("miso.csv", {"u1": u1x[PRE:], "u2": u2x[PRE:], "y": y})


def make_counters():
    rng = np.random.default_rng(SEEDS["counters"])
    n = 300
    inc = rng.poisson(5000, n - 1)
    total = [123456789]
    for d in inc:
        total.append(total[-1] + int(d))
    steps = 0.05 * rng.standard_normal(n - 1)
    load = [2.0]
    for s in steps:
        load.append(load[-1] + float(s))
    load = [float(v) for v in q(load)]
    assert min(load) > 0
    t = times(n)
    write_csv("counters.csv", ["time", "bytes_total", "load"], [t, total, load], time_col=0)
    back = read_csv("counters.csv")
    assert np.array_equal(back["bytes_total"], np.array(total, float))
    assert np.array_equal(back["load"], np.array(load))
    rates = [None] + [(total[i] - total[i - 1]) / (t[i] - t[i - 1]) for i in range(1, n)]
    write_csv("counters_rates.csv", ["time", "bytes_per_s"], [t, rates], time_col=0)
    return back


# ---------------------------------------------------------------- figures
def xcorr_file(tag, d):
    u, y = d["u"], d["y"]
    n = len(u)
    lags = list(range(-L, L + 1))
    c = xcov_direct(u, y, lags)
    cuu0 = xcov_direct(u, u, [0])[0]
    cyy0 = xcov_direct(y, y, [0])[0]
    su, sy = math.sqrt(cuu0), math.sqrt(cyy0)
    r = c / (su * sy)
    # independent: statsmodels. ccovf(x,y)[k] = cov(x(t+k), y(t)).
    pos = ccovf(y, u, adjusted=False, demean=True, fft=False)[: L + 1]   # c_uy(+k)
    neg = ccovf(u, y, adjusted=False, demean=True, fft=False)[: L + 1]   # c_uy(-k)
    sm_c = np.concatenate([neg[1:][::-1], pos])
    rpos = ccf(y, u, adjusted=False, fft=False, nlags=L + 1)
    rneg = ccf(u, y, adjusted=False, fft=False, nlags=L + 1)
    sm_r = np.concatenate([rneg[1:][::-1], rpos])
    rpos_f = ccf(y, u, adjusted=False, fft=True, nlags=L + 1)
    rneg_f = ccf(u, y, adjusted=False, fft=True, nlags=L + 1)
    sm_rf = np.concatenate([rneg_f[1:][::-1], rpos_f])
    log("%s (N=%d):" % (tag, n))
    check("xcov  direct vs statsmodels ccovf(adjusted=False,fft=False)", c, sm_c, 1e-12)
    check("xcorr direct vs statsmodels ccf(adjusted=False,fft=False)", r, sm_r, 1e-12)
    check("xcorr direct vs statsmodels ccf(adjusted=False,fft=True)", r, sm_rf, 1e-12)
    check("sigma_u*sigma_y direct vs np.std(u)*np.std(y)", [su * sy], [np.std(u) * np.std(y)], 1e-14)
    bound = Z99 / math.sqrt(n)
    write_csv("xcorr_%s.csv" % tag, ["lag", "xcov", "xcorr", "bound"],
              [lags, list(c), list(r), [bound] * len(lags)])
    i = int(np.argmax(np.abs(r)))
    log("  peak |xcorr| = %.6f at lag %+d; bound = %.6f; min |xcorr| = %.3e"
        % (abs(r[i]), lags[i], bound, float(np.min(np.abs(r)))))
    return lags, c, r


def acf_file(d):
    u = d["u"]
    lags = list(range(0, L + 1))
    c = xcov_direct(u, u, lags)
    a = c / c[0]
    log("acf_fir_u (N=%d):" % len(u))
    check("acov direct vs statsmodels acovf(adjusted=False,fft=False)", c,
          acovf(u, adjusted=False, demean=True, fft=False, nlag=L), 1e-12)
    check("acf  direct vs statsmodels acf(adjusted=False,fft=False)", a,
          acf(u, adjusted=False, nlags=L, fft=False), 1e-12)
    write_csv("acf_fir_u.csv", ["lag", "acov", "acf"], [lags, list(c), list(a)])


def lagmat(x, m, rows):
    """Phi[r, k] = x[t_r - k] for t_r in rows, k = 0..m."""
    return np.column_stack([x[rows - k] for k in range(m + 1)])


def ls_solve(tag, phi, target):
    res = sm.OLS(target, phi).fit()
    g_sm, sd_sm = np.asarray(res.params), np.asarray(res.bse)
    g_np, _, rank, _ = np.linalg.lstsq(phi, target, rcond=None)
    assert rank == phi.shape[1]
    resid = target - phi @ g_np
    s2 = float(resid @ resid) / (phi.shape[0] - phi.shape[1])
    sd_np = np.sqrt(s2 * np.diag(np.linalg.inv(phi.T @ phi)))
    check("%s g:  statsmodels OLS vs numpy lstsq" % tag, g_np, g_sm, 1e-10)
    check("%s sd: statsmodels OLS bse vs numpy lstsq + inv(PhiTPhi)" % tag, sd_np, sd_sm, 1e-10)
    log("  %s: n_rows=%d n_params=%d s2=%r cond(Phi)=%.3g"
        % (tag, phi.shape[0], phi.shape[1], s2, np.linalg.cond(phi)))
    return g_sm, sd_sm


def true_g_padded(g, m):
    return np.array(list(g) + [0.0] * (m + 1 - len(g)))


def ls_fir(d):
    m = 20
    u = d["u"] - fsum_mean(d["u"])
    y = d["y"] - fsum_mean(d["y"])
    rows = np.arange(m, len(u))
    log("impulse_fir_ls (M=%d):" % m)
    g, sd = ls_solve("fir", lagmat(u, m, rows), y[rows])
    step = np.cumsum(g)
    write_csv("impulse_fir_ls.csv", ["lag", "g", "sd", "step"],
              [list(range(m + 1)), list(g), list(sd), list(step)])
    gt = true_g_padded(FIR_G, m)
    err = np.abs(g - gt)
    log("  max |g_ls - g_true| = %.3e (lag %d); max |err|/sd = %.2f; max |step - true step| = %.3e"
        % (err.max(), int(err.argmax()), float(np.max(err / sd)),
           float(np.max(np.abs(step - np.cumsum(gt))))))


def ls_miso(d):
    m = 10
    u1 = d["u1"] - fsum_mean(d["u1"])
    u2 = d["u2"] - fsum_mean(d["u2"])
    y = d["y"] - fsum_mean(d["y"])
    rows = np.arange(m, len(y))
    phi = np.hstack([lagmat(u1, m, rows), lagmat(u2, m, rows)])
    log("impulse_miso_ls (M=%d per input):" % m)
    g, sd = ls_solve("miso", phi, y[rows])
    g1, g2, sd1, sd2 = g[: m + 1], g[m + 1:], sd[: m + 1], sd[m + 1:]
    write_csv("impulse_miso_ls.csv", ["lag", "g_u1", "sd_u1", "g_u2", "sd_u2"],
              [list(range(m + 1)), list(g1), list(sd1), list(g2), list(sd2)])
    t1 = np.zeros(m + 1); t1[1], t1[2] = 1.0, 0.5
    t2 = np.zeros(m + 1); t2[3] = -0.7
    e1, e2 = np.abs(g1 - t1), np.abs(g2 - t2)
    log("  max |g_u1 - true| = %.3e (lag %d); max |g_u2 - true| = %.3e (lag %d)"
        % (e1.max(), int(e1.argmax()), e2.max(), int(e2.argmax())))


def cra_fir(d):
    m, na = 20, 10
    u = d["u"] - fsum_mean(d["u"])
    y = d["y"] - fsum_mean(d["y"])
    n = len(u)
    log("impulse_fir_cra (M=%d, AR order n=%d):" % (m, na))
    res = AutoReg(u, lags=na, trend="n").fit()
    phi = np.asarray(res.params)
    rows = np.arange(na, n)
    X = np.column_stack([u[rows - i] for i in range(1, na + 1)])
    phi_np = np.linalg.lstsq(X, u[rows], rcond=None)[0]
    check("AR phi: statsmodels AutoReg vs numpy lstsq", phi_np, phi, 1e-10)
    write_csv("impulse_fir_cra_ar.csv", ["i", "phi"], [list(range(1, na + 1)), list(phi)])

    def afilt(x):
        out = x[rows].copy()
        for i in range(1, na + 1):
            out = out - phi[i - 1] * x[rows - i]
        return out

    eps, eta = afilt(u), afilt(y)
    check("eps: A(q)u vs AutoReg resid", eps, np.asarray(res.resid), 1e-12)
    nf = len(eps)
    assert nf == n - na
    c = xcov_direct(eps, eta, range(m + 1))
    cee0 = xcov_direct(eps, eps, [0])[0]
    chh0 = xcov_direct(eta, eta, [0])[0]
    g = c / cee0
    g_sm = ccovf(eta, eps, adjusted=False, demean=True, fft=False)[: m + 1] / \
        ccovf(eps, eps, adjusted=False, demean=True, fft=False)[0]
    check("CRA g: direct vs statsmodels ccovf ratio", g, g_sm, 1e-12)
    bound = Z99 * math.sqrt(chh0 / cee0) / math.sqrt(nf)
    step = np.cumsum(g)
    write_csv("impulse_fir_cra.csv", ["lag", "g", "bound", "step"],
              [list(range(m + 1)), list(g), [bound] * (m + 1), list(step)])
    gt = true_g_padded(FIR_G, m)
    err = np.abs(g - gt)
    log("  max |g_cra - g_true| = %.3e (lag %d); bound = %.4f; max |step - true step| = %.3e"
        % (err.max(), int(err.argmax()), bound, float(np.max(np.abs(step - np.cumsum(gt))))))
    log("  AR(10) phi = %s (true input: AR(1), phi_1 = 0.8)"
        % ", ".join("%.4f" % p for p in phi))

    # n = 0: no prewhitening
    c0 = xcov_direct(d["u"], d["y"], range(m + 1))
    cuu0 = xcov_direct(d["u"], d["u"], [0])[0]
    cyy0 = xcov_direct(d["y"], d["y"], [0])[0]
    g0 = c0 / cuu0
    g0_sm = ccovf(d["y"], d["u"], adjusted=False, fft=False)[: m + 1] / \
        acovf(d["u"], adjusted=False, fft=False, nlag=0)[0]
    log("impulse_fir_cra_n0 (M=%d, no prewhitening):" % m)
    check("CRA n=0 g: direct vs statsmodels", g0, g0_sm, 1e-12)
    b0 = Z99 * math.sqrt(cyy0 / cuu0) / math.sqrt(n)
    step0 = np.cumsum(g0)
    write_csv("impulse_fir_cra_n0.csv", ["lag", "g", "bound", "step"],
              [list(range(m + 1)), list(g0), [b0] * (m + 1), list(step0)])
    err0 = np.abs(g0 - gt)
    log("  max |g_cra_n0 - g_true| = %.3e (lag %d); bound = %.4f (biased by the coloured input,"
        " as expected)" % (err0.max(), int(err0.argmax()), b0))


def verify_statsmodels_convention(d):
    """statsmodels ccf(x, y)[k] = corr(x(t+k), y(t)). With y(t) = u(t-7): ccf(y, u) peaks at 7."""
    u, y = d["u"], d["y"]
    a = ccf(y, u, adjusted=False, fft=False, nlags=L + 1)
    b = ccf(u, y, adjusted=False, fft=False, nlags=L + 1)
    assert int(np.argmax(a)) == 7 and a[7] > 0.99, a[:10]
    assert np.max(np.abs(b)) < 0.2, b[:10]
    log("statsmodels convention: ccf(y,u) peaks at k=%d (%.6f); max|ccf(u,y)| over 0..L = %.4f"
        " -> ccf(x,y)[k] = corr(x(t+k), y(t)); c_uy(+k) = ccf(y,u)[k]"
        % (int(np.argmax(a)), a[7], np.max(np.abs(b))))


def main():
    log("versions: python %s, numpy %s, scipy %s, statsmodels %s"
        % (sys.version.split()[0], np.__version__, scipy.__version__, statsmodels.__version__))
    white = make_white()
    delay = make_delay()
    fir = make_fir()
    miso = make_miso()
    make_counters()
    verify_statsmodels_convention(delay)
    xcorr_file("white", white)
    xcorr_file("delay", delay)
    xcorr_file("fir", fir)
    acf_file(fir)
    ls_fir(fir)
    ls_miso(miso)
    cra_fir(fir)
    with open(os.path.join(HERE, "selfcheck.txt"), "w", newline="") as f:
        f.write("\n".join(LOG) + "\n")
    log("all self-checks passed")


if __name__ == "__main__":
    main()
