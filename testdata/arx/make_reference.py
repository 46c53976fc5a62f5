#!/usr/bin/env python3
"""Reference datasets and figures for vmmon's ARX identification.

Run from anywhere:  python3 make_reference.py
Everything is written next to this script; a rerun with the same package versions reproduces
every file byte for byte (BLAS is pinned to one thread below). The GNU Octave cross-check is a
separate step (arx_octave.m, see README.md); this script does not need Octave.

CONVENTIONS (the contract vmmon implements)
-------------------------------------------
Model (MATLAB System Identification Toolbox form), MISO with one B and one nk per input:
    A(q) y(t) = sum_i B_i(q) u_i(t - nk_i) + e(t)
    A   = 1 + a1 q^-1 + ... + a_na q^-na
    B_i = b_i1 + b_i2 q^-1 + ... + b_i,nb_i q^-(nb_i - 1)
    y(t) = -a1 y(t-1) - ... - a_na y(t-na) + sum_i sum_{j=1..nb_i} b_ij u_i(t - nk_i - j + 1) + e(t)
  theta (MATLAB order) = [a1..a_na, b_11..b_1,nb1, b_21..], names a1.., b1_1.., b2_1..
  regression form of the original experiment: alpha_i = -a_i, beta_ij = b_ij.

Estimation
  * Each column (output and every input) has its mean removed first, means over the
    estimation data (math.fsum(x)/N); no intercept. The means are written ("means").
  * Rows t = t0..N-1 (0-based), t0 = max(na, max_i(nk_i + nb_i - 1)), N_used = N - t0.
    Row t of Phi = [-y(t-1), ..., -y(t-na), u_1(t-nk_1), ..., u_1(t-nk_1-nb_1+1), u_2(...)...],
    target y(t). Solved with statsmodels OLS (the values written) and numpy.linalg.lstsq
    (asserted equal to 1e-10 relative).
  * d = na + sum_i nb_i, RSS = sum of squared residuals (math.fsum), V = RSS / N_used,
    lambda = RSS / (N_used - d), sd = sqrt(diag(lambda (Phi^T Phi)^-1)) (statsmodels bse).
    FPE  = V (1 + d/N_used) / (1 - d/N_used)
    nAIC = ln V + 2 d / N_used
    AIC  = N_used ln V + 2 d + N_used (ln 2 pi + 1)        (= statsmodels OLS aic, checked)
    BIC  = N_used ln V + N_used (ln 2 pi + 1) + d ln N_used  (= statsmodels OLS bic, checked)
    MDL  = V (1 + d ln N_used / N_used)
  * Fit % = 100 (1 - ||y - yhat|| / ||y - mean(y)||), y = the detrended output over rows
    t0..N-1 and mean(y) its mean over those same rows:
      (a) prediction: yhat = Phi theta (one step ahead);
      (b) simulation (free run): ys(t) = y(t) (the MEASURED detrended output) for t < t0, then
          for t = t0..N-1: ys(t) = -sum_i a_i ys(t-i) + sum_i sum_j b_ij u_i(t-nk_i-j+1)
          (measured detrended inputs; no noise). Only rows t0..N-1 enter the fit.
  * Poles: roots of z^na + a1 z^(na-1) + ... + a_na, computed with mpmath.polyroots at 60
    digits from the double coefficients (checked against numpy.roots); written sorted by
    decreasing magnitude, ties (conjugate pairs) by decreasing imaginary part.
  * cond_Phi = 2-norm condition number of Phi; cond_Phi_scaled = the same after scaling each
    column of Phi to unit 2-norm (informational only).

Octave window ("alt_windows.octave" in *_ref.json): the same regression started at
  t0_oct = max(na, max_i nb_i) + max_i nk_i - 1 + lead, which is the window GNU Octave control
  3.4.0 `arx` uses (see README.md); computed so the Octave comparison is exact. lead = 1 if some
  nk_i = 0 (arx_octave.m then advances every input by one sample), else 0.

Data sets (seeds in SEEDS, numpy.random.default_rng(seed), PCG64). Every system is simulated
from zero initial state with BURN = 1000 extra leading samples (inputs included) that are
dropped, so each file starts in the stationary regime. Inputs are quantised to 6 decimals
(q(x) = np.round(x, 6)) before the output is simulated; the output is quantised after (the
|rounding| <= 5e-7 joins the noise). Figures are computed from the values read back from the
CSV (asserted to round-trip exactly).
  arx221.csv   N=2000, na=2 nb=2 nk=3, A = 1 - 1.5 q^-1 + 0.7 q^-2, B = 1.0 + 0.5 q^-1,
               u = random binary +-1: segments of random length 1..5 (integers(1, 6)), each
               with a random sign (choice([-1, 1])); e ~ N(0, 0.2^2).
  arx_miso.csv N=3000, na=2 nb=[2,1] nk=[1,4], A = 1 - 1.2 q^-1 + 0.5 q^-2,
               B1 = 0.8 + 0.4 q^-1, B2 = -0.6; u1 white N(0,1), u2 random binary as above;
               e ~ N(0, 0.1^2).
  arx_big.csv  N=6000, na=20 nb=17 nk=50: 10 conjugate pole pairs, radius U(0.5, 0.9),
               angle U(0.05 pi, 0.95 pi), A = real(poly(poles)) (not rounded); B = 17 values
               U(-1, 1) rounded to 6 decimals; u white N(0,1); e ~ N(0, 0.05^2).
  arx_ill.csv  N=1000, na=1 nb=1 nk=1, byte-counter-like input magnitudes:
               u = 1e9 + round(1e4 N(0,1)) (integer valued, written as floats),
               y = 50 + x, x(t) = 0.8 x(t-1) + 5e-5 (u(t-1) - 1e9) + e(t), e ~ N(0, 0.1^2).
True parameters: *_true.json.

Measured data set (no truth, no *_true.json):
  ice_river.csv N=1096, daily 1972-01-01 .. 1974-12-31, R package tseries 0.10-53 (Debian
               r-cran-tseries 0.10-53-1) object ice.river (Tong 1990, pp. 432-440; Tong,
               Thanoon & Gudmundsson 1985): inputs prec (precipitation at Hveravellir, mm) and
               temp (mean temperature at Hveravellir, deg C), output flow_jok (mean daily flow
               of the Jokulsa Eystri, m^3/s; R's flow.jok). Values are R's doubles, written
               with repr (all are decimals with <= 2 places). Read from R (Rscript + tseries)
               when available, else from the committed CSV; the outputs are the same.
               Orders na=4 nb=[2,1] nk=[0,0]: the BIC minimum over na 1..6, nb_i 1..4,
               nk_i 0..2 on common rows t = 10..N-1 (logged in selfcheck.txt).

Order search (order_arx221.csv): arx221.csv, na 1..4, nb 1..4, nk 1..5 (80 candidates), ALL
on the same rows t = 8..N-1 (t0 = max(4, 5+4-1) = 8, N_used = 1992), full-data means;
columns na,nb,nk,V,FPE,nAIC,AIC,BIC,MDL. The choice of each criterion (minimum) is in
order_arx221_best.json.

Validation (validate_arx221.json): arx221.csv, true orders. Estimation on rows 0..1399 (70 %,
its own means), validation on rows 1400..1999 with the ESTIMATION means subtracted. On the
validation segment (re-indexed s = 0..599): simulation initialised with the measured
(detrended) outputs for s < t0 = 4, fit over s = 4..599; one-step residuals
eps(s) = y(s) - phi(s)^T theta for s = 4..599 (n = 596); residual autocorrelation lags 0..25
and input-residual cross-correlation lags -25..25 of those residuals and u(s), s = 4..599:
means removed, biased (divide by n at every lag), normalised by the ddof=0 standard
deviations; positive lag = input leads residual:
    c_ue(k) = (1/n) sum_s (u(s) - ubar)(eps(s+k) - ebar),  k >= 0 (and mirrored for k < 0);
bound = 2.58 / sqrt(n).
"""

import json
import math
import os
import sys

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import mpmath
import numpy as np
import scipy
import scipy.linalg
import statsmodels
import statsmodels.api as sm

HERE = os.path.dirname(os.path.abspath(__file__))
T0 = 1795430000.0
BURN = 1000
Z99 = 2.58
SEEDS = {"arx221": 20250201, "arx_miso": 20250202, "arx_big": 20250203, "arx_ill": 20250204}
LOG = []


def log(msg):
    print(msg)
    LOG.append(msg)


# ---------------------------------------------------------------- files
def fmt(v):
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    assert math.isfinite(v)
    return repr(v)


def write_text(name, text, limit):
    path = os.path.join(HERE, name)
    with open(path, "w", newline="") as f:
        f.write(text)
    size = os.path.getsize(path)
    assert size < limit, (name, size)


def write_csv(name, header, columns, time_col=None, limit=300_000):
    n = len(columns[0])
    assert all(len(c) == n for c in columns)
    lines = [",".join(header)]
    for i in range(n):
        lines.append(",".join("%.6f" % c[i] if j == time_col else fmt(c[i])
                              for j, c in enumerate(columns)))
    write_text(name, "\n".join(lines) + "\n", limit)


def read_csv(name):
    with open(os.path.join(HERE, name), newline="") as f:
        rows = f.read().split("\n")
    assert rows[-1] == ""
    header = rows[0].split(",")
    data = [r.split(",") for r in rows[1:-1]]
    return {h: np.array([float(r[j]) for r in data]) for j, h in enumerate(header)}


def to_json(obj, ind=0):
    """JSON with floats as repr(float); lists of scalars on one line; LF line ends."""
    pad, pad1 = " " * ind, " " * (ind + 2)
    if isinstance(obj, dict):
        items = ["%s%s: %s" % (pad1, json.dumps(k), to_json(v, ind + 2)) for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple, np.ndarray)):
        obj = list(obj)
        if all(not isinstance(v, (dict, list, tuple, np.ndarray)) for v in obj):
            return "[" + ", ".join(to_json(v) for v in obj) + "]"
        return "[\n" + ",\n".join(pad1 + to_json(v, ind + 2) for v in obj) + "\n" + pad + "]"
    if isinstance(obj, (bool, np.bool_)):
        return "true" if obj else "false"
    if isinstance(obj, str):
        return json.dumps(obj)
    if obj is None:
        return "null"
    return fmt(obj)


def write_json(name, obj):
    text = to_json(obj) + "\n"
    assert json.loads(text) is not None
    write_text(name, text, 100_000)


def q(x):
    return np.round(np.asarray(x, dtype=float), 6)


def times(n):
    return [T0 + i for i in range(n)]


def write_dataset(name, cols):
    n = len(next(iter(cols.values())))
    write_csv(name, ["time"] + list(cols), [times(n)] + [list(v) for v in cols.values()],
              time_col=0)
    back = read_csv(name)
    assert np.array_equal(back["time"], np.array(times(n)))
    for k, v in cols.items():
        assert np.array_equal(back[k], np.asarray(v, dtype=float)), (name, k)
    return back


# ---------------------------------------------------------------- checks
def rel_err(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = np.abs(a - b)
    scale = np.max(np.abs(b))
    elem = np.max(d / np.where(b == 0, 1.0, np.abs(b)))
    return float(np.max(d) / scale), float(elem)


def check(name, a, b, tol):
    scaled, elem = rel_err(a, b)
    log("  %-56s scaled %.2e   elementwise %.2e" % (name, scaled, elem))
    assert scaled <= tol, (name, scaled, tol)
    return scaled, elem


# ---------------------------------------------------------------- simulation of the truth
def binary_input(rng, n):
    out = []
    while len(out) < n:
        level = float(rng.choice([-1.0, 1.0]))
        out.extend([level] * int(rng.integers(1, 6)))
    return np.array(out[:n])


def simulate_true(a, bs, nks, us, e):
    """y(t) = -sum a_i y(t-i) + sum_i sum_j b_ij u_i(t-nk_i-j+1) + e(t), zero initial state,
    fixed summation order (AR terms, then inputs in order, then e)."""
    n = len(e)
    y = [0.0] * n
    ul = [list(map(float, u)) for u in us]
    for t in range(n):
        s = 0.0
        for i, ai in enumerate(a, start=1):
            if t - i >= 0:
                s += -ai * y[t - i]
        for u, b, nk in zip(ul, bs, nks):
            for j, bj in enumerate(b):
                k = t - nk - j
                if k >= 0:
                    s += bj * u[k]
        y[t] = s + float(e[t])
    return np.array(y)


def poles_of(a):
    """Roots of z^na + a1 z^(na-1) + ... (mpmath, 60 digits), sorted |p| desc, imag desc."""
    if len(a) == 0:
        return []
    with mpmath.workdps(60):
        coeffs = [mpmath.mpf(1)] + [mpmath.mpf(float(v)) for v in a]
        r = mpmath.polyroots(coeffs, maxsteps=2000, extraprec=400)
        p = [(float(abs(z)), float(mpmath.re(z)), float(mpmath.im(z))) for z in r]
    p.sort(key=lambda x: (-x[0], -x[2]))
    npr = np.roots([1.0] + [float(v) for v in a])
    mags_np = np.sort(np.abs(npr))[::-1]
    sc, _ = rel_err(mags_np, [x[0] for x in p])
    assert sc < 1e-8, sc
    poles_of.last_check = sc
    return p


def true_json(name, na, nb, nk, a, bs, noise_sd, seed, extra):
    p = poles_of(a)
    theta = list(a) + [v for b in bs for v in b]
    obj = {"dataset": name + ".csv", "na": na, "nb": nb, "nk": nk,
           "A": [1.0] + list(a), "B": [list(b) for b in bs], "theta": theta,
           "theta_names": theta_names(na, nb), "noise_sd": noise_sd, "seed": seed,
           "pole_abs": [x[0] for x in p], "poles_re_im": [[x[1], x[2]] for x in p]}
    obj.update(extra)
    write_json(name + "_true.json", obj)
    return theta


def theta_names(na, nb):
    return ["a%d" % i for i in range(1, na + 1)] + \
        ["b%d_%d" % (i + 1, j + 1) for i, m in enumerate(nb) for j in range(m)]


# ---------------------------------------------------------------- data sets
def make_arx221():
    rng = np.random.default_rng(SEEDS["arx221"])
    n = 2000
    a, b = [-1.5, 0.7], [1.0, 0.5]
    u = binary_input(rng, BURN + n)
    e = 0.2 * rng.standard_normal(BURN + n)
    y = q(simulate_true(a, [b], [3], [u], e))
    theta = true_json("arx221", 2, [2], [3], a, [b], 0.2, SEEDS["arx221"],
                      {"input": "random binary +-1, segments of random length 1..5, random sign"})
    return write_dataset("arx221.csv", {"u": u[BURN:], "y": y[BURN:]}), theta


def make_miso():
    rng = np.random.default_rng(SEEDS["arx_miso"])
    n = 3000
    a, b1, b2 = [-1.2, 0.5], [0.8, 0.4], [-0.6]
    u1 = q(rng.standard_normal(BURN + n))
    u2 = binary_input(rng, BURN + n)
    e = 0.1 * rng.standard_normal(BURN + n)
    y = q(simulate_true(a, [b1, b2], [1, 4], [u1, u2], e))
    theta = true_json("arx_miso", 2, [2, 1], [1, 4], a, [b1, b2], 0.1, SEEDS["arx_miso"],
                      {"input": "u1 white N(0,1); u2 random binary +-1, segments 1..5"})
    return write_dataset("arx_miso.csv", {"u1": u1[BURN:], "u2": u2[BURN:], "y": y[BURN:]}), theta


def make_big():
    rng = np.random.default_rng(SEEDS["arx_big"])
    n, na, nb, nk = 6000, 20, 17, 50
    r = rng.uniform(0.5, 0.9, na // 2)
    ang = rng.uniform(0.05 * math.pi, 0.95 * math.pi, na // 2)
    p = r * np.exp(1j * ang)
    gen = np.concatenate([p, np.conj(p)])
    a = [float(v) for v in np.real(np.poly(gen))[1:]]
    b = [float(v) for v in q(rng.uniform(-1.0, 1.0, nb))]
    u = q(rng.standard_normal(BURN + n))
    e = 0.05 * rng.standard_normal(BURN + n)
    y = q(simulate_true(a, [b], [nk], [u], e))
    gp = sorted(zip(r, ang), key=lambda x: -x[0])
    theta = true_json("arx_big", na, [nb], [nk], a, [b], 0.05, SEEDS["arx_big"],
                      {"input": "white N(0,1)",
                       "generating_pole_pairs_radius_angle": [[float(x), float(w)] for x, w in gp]})
    return write_dataset("arx_big.csv", {"u": u[BURN:], "y": y[BURN:]}), theta


def make_ill():
    rng = np.random.default_rng(SEEDS["arx_ill"])
    n = 1000
    a, b = [-0.8], [5e-5]
    du = np.round(1e4 * rng.standard_normal(BURN + n))
    e = 0.1 * rng.standard_normal(BURN + n)
    x = simulate_true(a, [b], [1], [du], e)
    u = 1e9 + du
    y = q(50.0 + x)
    theta = true_json("arx_ill", 1, [1], [1], a, [b], 0.1, SEEDS["arx_ill"],
                      {"input": "u = 1e9 + round(1e4 N(0,1)); the model holds for "
                                "y - 50 and u - 1e9 (x(t) = 0.8 x(t-1) + 5e-5 (u(t-1) - 1e9) + e)"})
    return write_dataset("arx_ill.csv", {"u": u[BURN:], "y": y[BURN:]}), theta


# ---------------------------------------------------------------- measured data: ice_river
ICE_SOURCE = {
    "description": "Icelandic river data: daily observations 1972-01-01 .. 1974-12-31 (1096 days). "
                   "Output flow_jok = mean daily flow of the Jokulsa Eystri river (m^3/s); "
                   "inputs prec = daily precipitation at Hveravellir (mm) and temp = mean daily "
                   "temperature at Hveravellir (deg C). Measured, not simulated.",
    "package": "R package tseries 0.10-53 (CRAN), as Debian bookworm r-cran-tseries 0.10-53-1",
    "object": "ice.river (data(ice.river, package = 'tseries')), columns flow.jok, prec, temp; "
              "flow.vat (Vatnsdalsa river) is not used",
    "path": "/usr/lib/R/site-library/tseries/data/ice.river.rda",
    "rda_sha256": "dfa18534c6efe5f10cf379cab6d53063188371c90fc311fb9f06f21beb38516f",
    "package_licence": "GPL-2 (tseries DESCRIPTION)",
    "package_source_note": "Time Series Data Library, https://robjhyndman.com/TSDL/",
    "references": [
        "H. Tong (1990): Non-Linear Time Series, A Dynamical System Approach. Oxford University "
        "Press, Oxford, pages 432-440.",
        "H. Tong, B. Thanoon and G. Gudmundsson (1985): Threshold time series modelling of two "
        "Icelandic riverflow systems. Water Resources Bulletin 21, 651-661."],
    "csv_columns": {"prec": "prec", "temp": "temp", "flow_jok": "flow.jok"},
    "time": "row i (0-based) is day i from 1972-01-01, written as 1795430000 + i seconds",
}
ICE_R = ("data(ice.river, package = 'tseries'); x <- ice.river[, c('prec', 'temp', 'flow.jok')]; "
         "cat(as.character(packageVersion('tseries')), '\\n'); "
         "write.table(matrix(sprintf('%.17g', x), nrow(x)), sep = ',', quote = FALSE, "
         "row.names = FALSE, col.names = FALSE)")


def make_ice_river():
    """ice_river.csv from R's tseries package when Rscript and tseries are there (the doubles
    R stores, printed with 17 digits, written back with repr); else the committed CSV. The log
    is the same either way: the CSV's content is asserted, not the way it was obtained."""
    import shutil
    import subprocess
    cols = None
    if shutil.which("Rscript"):
        r = subprocess.run(["Rscript", "-e", ICE_R], capture_output=True, text=True)
        if r.returncode == 0:
            lines = r.stdout.split("\n")
            print("  ice_river: read from R tseries %s (%s)" % (lines[0].strip(), ICE_SOURCE["path"]))
            vals = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:] if ln])
            cols = {"prec": vals[:, 0], "temp": vals[:, 1], "flow_jok": vals[:, 2]}
        else:
            print("  ice_river: Rscript failed (%s); using the committed CSV" % r.stderr.strip()[:200])
    else:
        print("  ice_river: no Rscript; using the committed CSV")
    if cols is None:
        back = read_csv("ice_river.csv")
        cols = {k: back[k] for k in ("prec", "temp", "flow_jok")}
    data = write_dataset("ice_river.csv", cols)
    n = len(data["flow_jok"])
    assert n == 1096 and all(np.all(np.isfinite(v)) for v in cols.values())
    # every value is a decimal with at most 2 places, as published (e.g. 16.1, 3.67)
    for k, v in cols.items():
        assert all(float("%.2f" % x) == x for x in v), k
    log("ice_river.csv: N=%d, R tseries ice.river (Tong 1990), columns prec, temp, flow_jok;"
        " sums %s" % (n, ", ".join("%s %r" % (k, math.fsum(cols[k])) for k in cols)))
    return data


def ice_river_orders(data):
    """Why na=4 nb=[2,1] nk=[0,0]: BIC over na 1..6, nb_i 1..4, nk_i 0..2 on common rows."""
    y = data["flow_jok"] - fsum_mean(data["flow_jok"])
    us = [data[c] - fsum_mean(data[c]) for c in ("prec", "temp")]
    t0 = 10                                      # max(6, 2 + 4 - 1)
    res = []
    for na in range(1, 7):
        for nb1 in range(1, 5):
            for nb2 in range(1, 5):
                for nk1 in range(0, 3):
                    for nk2 in range(0, 3):
                        nb, nk = [nb1, nb2], [nk1, nk2]
                        phi, tgt = build_phi(y, us, na, nb, nk, t0)
                        th = np.linalg.lstsq(phi, tgt, rcond=None)[0]
                        c = criteria(math.fsum((tgt - phi @ th) ** 2), len(tgt), phi.shape[1])
                        res.append((c["BIC"], na, nb, nk, c["nAIC"]))
    res.sort(key=lambda r: r[0])
    log("ice_river order choice: BIC over na 1..6, nb 1..4 (each), nk 0..2 (each), %d candidates,"
        " common rows t = %d..%d:" % (len(res), t0, len(y) - 1))
    for r in res[:3]:
        log("  BIC %.3f  na=%d nb=%s nk=%s  (nAIC %.5f)" % r)
    r = next(r for r in res if min(r[3]) >= 1)
    log("  best with every nk >= 1: BIC %.3f  na=%d nb=%s nk=%s" % r[:4])
    assert (res[0][1], res[0][2], res[0][3]) == (4, [2, 1], [0, 0])


# ---------------------------------------------------------------- ARX estimation
def fsum_mean(x):
    return math.fsum(x) / len(x)


def build_phi(y, us, na, nb, nk, t0):
    rows = np.arange(t0, len(y))
    cols = [-y[rows - i] for i in range(1, na + 1)]
    for u, m, k in zip(us, nb, nk):
        cols += [u[rows - k - j] for j in range(m)]
    return np.column_stack(cols), y[rows]


def octave_lead(nk):
    """1 when some nk is 0: Octave's arx cannot use u(t) itself (its B has a built-in delay),
    so arx_octave.m advances every input by one sample; its window then starts one row later."""
    return 1 if min(nk) == 0 else 0


def default_t0(na, nb, nk):
    return max([na] + [k + m - 1 for m, k in zip(nb, nk)])


def fit_pct(y, yhat):
    m = fsum_mean(y)
    return 100.0 * (1.0 - math.sqrt(math.fsum((y - yhat) ** 2)) / math.sqrt(math.fsum((y - m) ** 2)))


def simulate(theta, y_init, us, na, nb, nk, t0):
    """ys(t) = y_init(t) for t < t0, then the free-run recursion (fixed summation order)."""
    n = len(us[0]) if us else len(y_init)
    a = [float(v) for v in theta[:na]]
    ys = [float(v) for v in y_init[:t0]] + [0.0] * (n - t0)
    ul = [list(map(float, u)) for u in us]
    pos = na
    bs = []
    for m in nb:
        bs.append([float(v) for v in theta[pos:pos + m]])
        pos += m
    for t in range(t0, n):
        s = 0.0
        for i in range(1, na + 1):
            s += -a[i - 1] * ys[t - i]
        for u, b, k in zip(ul, bs, nk):
            for j, bj in enumerate(b):
                s += bj * u[t - k - j]
        ys[t] = s
    return np.array(ys)


def simulate_lfilter(theta, y_init, us, na, nb, nk, t0):
    """Independent check of simulate(): scipy.signal.lfilter of the B-part through 1/A with
    the initial state set by lfiltic from the measured y(t0-1), ..., y(t0-na)."""
    import scipy.signal
    n = len(us[0])
    x = np.zeros(n - t0)
    pos = na
    for u, m, k in zip(us, nb, nk):
        for j in range(m):
            x += theta[pos + j] * u[t0 - k - j: n - k - j]
        pos += m
    a = np.concatenate([[1.0], theta[:na]])
    zi = scipy.signal.lfiltic([1.0], a, y_init[:t0][::-1][:na])
    return scipy.signal.lfilter([1.0], a, x, zi=zi)[0]


def criteria(rss, n, d):
    v = rss / n
    c = n * (math.log(2 * math.pi) + 1.0)
    return {"V": v, "FPE": v * (1 + d / n) / (1 - d / n), "nAIC": math.log(v) + 2 * d / n,
            "AIC": n * math.log(v) + 2 * d + c, "BIC": n * math.log(v) + c + d * math.log(n),
            "MDL": v * (1 + d * math.log(n) / n)}


def solve(tag, phi, target, quiet=False):
    res = sm.OLS(target, phi).fit()
    th_sm, sd_sm = np.asarray(res.params), np.asarray(res.bse)
    th_np, _, rank, _ = np.linalg.lstsq(phi, target, rcond=None)
    assert rank == phi.shape[1]
    resid = target - phi @ th_np
    lam_np = float(resid @ resid) / (phi.shape[0] - phi.shape[1])
    # sd two more ways: QR (R^-1 R^-T, backward stable) and normal equations (inv(PhiT Phi),
    # error ~ cond(Phi)^2 eps: only logged, it is the least accurate of the three)
    r = np.linalg.qr(phi, mode="r")
    rinv = scipy.linalg.solve_triangular(r, np.eye(r.shape[0]))
    sd_qr = np.sqrt(lam_np * np.sum(rinv ** 2, axis=1))
    sd_ne = np.sqrt(lam_np * np.diag(np.linalg.inv(phi.T @ phi)))
    if quiet:
        assert rel_err(th_np, th_sm)[0] < 1e-10 and rel_err(sd_qr, sd_sm)[0] < 1e-10
    else:
        check("%s theta: statsmodels OLS vs numpy lstsq" % tag, th_np, th_sm, 1e-10)
        check("%s sd:    statsmodels bse vs lstsq-lambda + QR R^-1" % tag, sd_qr, sd_sm, 1e-10)
        sc, el = rel_err(sd_ne, sd_sm)
        log("  %-56s scaled %.2e   elementwise %.2e (info)"
            % ("%s sd:    statsmodels bse vs inv(PhiT Phi)" % tag, sc, el))
    return th_sm, sd_sm, res


def estimate(tag, y, us, na, nb, nk, t0=None, quiet=False):
    """y, us: already detrended. Returns the reference dict (no means)."""
    t0 = default_t0(na, nb, nk) if t0 is None else t0
    phi, target = build_phi(y, us, na, nb, nk, t0)
    n_used, d = phi.shape
    assert n_used == len(y) - t0
    th, sd, res = solve(tag, phi, target, quiet)
    resid = target - phi @ th
    rss = math.fsum(resid ** 2)
    crit = criteria(rss, n_used, d)
    if not quiet:
        check("%s RSS: fsum vs statsmodels ssr" % tag, [rss], [res.ssr], 1e-10)
        check("%s AIC, BIC: formula vs statsmodels aic, bic" % tag, [crit["AIC"], crit["BIC"]],
              [res.aic, res.bic], 1e-12)
    out = {"t0": t0, "N_used": n_used, "d": d, "theta": list(th), "sd": list(sd), "RSS": rss,
           "lambda": rss / (n_used - d)}
    out.update(crit)
    out["_phi"], out["_target"], out["_resid"] = phi, target, resid
    return out


def reference(name, data, inputs, na, nb, nk, true_theta, output="y"):
    log("%s (na=%d nb=%s nk=%s):" % (name, na, nb, nk))
    means = {c: fsum_mean(data[c]) for c in inputs + [output]}
    y = data[output] - means[output]
    us = [data[c] - means[c] for c in inputs]
    n = len(y)
    est = estimate(name, y, us, na, nb, nk)
    th, t0 = np.array(est["theta"]), est["t0"]
    phi, target = est["_phi"], est["_target"]
    fit_pred = fit_pct(target, phi @ th)
    ys = simulate(th, y, us, na, nb, nk, t0)
    fit_sim = fit_pct(target, ys[t0:])
    check("%s simulation: loop vs scipy lfilter + lfiltic" % name, ys[t0:],
          simulate_lfilter(th, y, us, na, nb, nk, t0), 1e-12)
    a = list(th[:na])
    p = poles_of(a)
    bs, pos = [], na
    for m in nb:
        bs.append(list(th[pos:pos + m]))
        pos += m
    log("  %-56s scaled %.2e" % ("%s |poles|: mpmath polyroots vs numpy roots" % name,
                                   poles_of.last_check))
    colnorm = np.sqrt(np.sum(phi ** 2, axis=0))
    ref = {"dataset": name + ".csv", "inputs": inputs, "output": output, "na": na, "nb": nb,
           "nk": nk, "N": n, "t0": t0, "N_used": est["N_used"], "d": est["d"], "means": means,
           "theta_names": theta_names(na, nb), "theta": est["theta"], "sd": est["sd"],
           "A": [1.0] + a, "B": bs, "alpha": [-v for v in a], "beta": bs,
           "RSS": est["RSS"], "V": est["V"], "lambda": est["lambda"], "FPE": est["FPE"],
           "nAIC": est["nAIC"], "AIC": est["AIC"], "BIC": est["BIC"], "MDL": est["MDL"],
           "fit_pred_pct": fit_pred, "fit_sim_pct": fit_sim,
           "pole_abs": [x[0] for x in p], "poles_re_im": [[x[1], x[2]] for x in p],
           "stable": bool(p[0][0] < 1.0),
           "cond_Phi": float(np.linalg.cond(phi)),
           "cond_Phi_scaled": float(np.linalg.cond(phi / colnorm))}
    # the window GNU Octave control 3.4.0 arx uses (README.md); lead = 1 when some nk is 0
    # (arx_octave.m then advances the inputs by one sample)
    t0o = max([na] + list(nb)) + max(nk) - 1 + octave_lead(nk)
    alt = estimate(name + " octave-window", y, us, na, nb, nk, t0=t0o, quiet=True)
    ref["alt_windows"] = {"octave": {"t0": t0o, "N_used": alt["N_used"], "theta": alt["theta"],
                                     "sd": alt["sd"], "RSS": alt["RSS"], "V": alt["V"]}}
    log("  N_used=%d d=%d V=%.6g lambda=%.6g fit_pred=%.4f%% fit_sim=%.4f%% cond(Phi)=%.4g"
        " (scaled %.4g) max|pole|=%.6f" % (est["N_used"], est["d"], est["V"], est["lambda"],
                                            fit_pred, fit_sim, ref["cond_Phi"],
                                            ref["cond_Phi_scaled"], p[0][0]))
    if true_theta is None:                     # measured data: there is no truth
        log("  (no true system); octave window t0=%d: max|dtheta|/max|theta| = %.2e"
            % (t0o, rel_err(alt["theta"], est["theta"])[0]))
    else:
        err = np.abs(th - np.array(true_theta)) / np.array(est["sd"])
        log("  |theta - true|/sd: max %.2f (%s); octave window t0=%d: max|dtheta|/max|theta| = %.2e"
            % (err.max(), ref["theta_names"][int(err.argmax())], t0o,
               rel_err(alt["theta"], est["theta"])[0]))
    return ref, y, us


# ---------------------------------------------------------------- extras
def ill_conditioning(data, ref):
    """Un-centred regression of arx_ill.csv (na=nb=nk=1): how badly conditioned it is."""
    y, u = data["y"], data["u"]
    phi_raw, _ = build_phi(y, [u], 1, [1], [1], 1)
    cr = float(np.linalg.cond(phi_raw))
    cn = float(np.linalg.cond(phi_raw / np.sqrt(np.sum(phi_raw ** 2, axis=0))))
    ref["raw_uncentred"] = {"cond_Phi": cr, "cond_Phi_scaled": cn,
                            "cond_PhiT_Phi": float(np.linalg.cond(phi_raw.T @ phi_raw))}
    log("  arx_ill un-centred Phi: cond %.3e, column-scaled %.3e, cond(PhiT Phi) %.3e;"
        " centred: cond %.3e, scaled %.3e" % (cr, cn, ref["raw_uncentred"]["cond_PhiT_Phi"],
                                              ref["cond_Phi"], ref["cond_Phi_scaled"]))


def order_search(data):
    log("order search on arx221.csv (na 1..4, nb 1..4, nk 1..5, common t0 = 8):")
    y = data["y"] - fsum_mean(data["y"])
    u = data["u"] - fsum_mean(data["u"])
    t0 = max(4, 5 + 4 - 1)
    rows, keys = [], ["V", "FPE", "nAIC", "AIC", "BIC", "MDL"]
    worst = 0.0
    for na in range(1, 5):
        for nb in range(1, 5):
            for nk in range(1, 6):
                est = estimate("order", y, [u], na, [nb], [nk], t0=t0, quiet=True)
                assert est["N_used"] == len(y) - 8
                th_np = np.linalg.lstsq(est["_phi"], est["_target"], rcond=None)[0]
                worst = max(worst, rel_err(th_np, est["theta"])[0])
                rows.append([na, nb, nk] + [est[k] for k in keys])
    log("  all 80 candidates: statsmodels vs lstsq theta agree to %.2e (scaled)" % worst)
    cols = list(zip(*rows))
    write_csv("order_arx221.csv", ["na", "nb", "nk"] + keys, [list(c) for c in cols])
    best = {}
    for j, k in enumerate(keys):
        vals = np.array([r[3 + j] for r in rows])
        order = np.argsort(vals, kind="stable")
        b, s = rows[order[0]], rows[order[1]]
        margin = float(vals[order[1]] - vals[order[0]])
        best[k] = {"na": b[0], "nb": b[1], "nk": b[2], "value": b[3 + j],
                   "runner_up": {"na": s[0], "nb": s[1], "nk": s[2], "value": s[3 + j]},
                   "margin": margin, "relative_margin": margin / abs(float(vals[order[0]]))}
        log("  %-4s picks na=%d nb=%d nk=%d (%.10g); runner-up na=%d nb=%d nk=%d, margin %.3g"
            " (relative %.2e)" % (k, b[0], b[1], b[2], b[3 + j], s[0], s[1], s[2], margin,
                                  best[k]["relative_margin"]))
    write_json("order_arx221_best.json", {"dataset": "arx221.csv", "t0": t0, "N_used": len(y) - t0,
                                          "candidates": "na 1..4, nb 1..4, nk 1..5",
                                          "best": best})


def xcov(a, b, lags):
    """Biased cross-covariance, means removed, positive k = a leads b (math.fsum)."""
    n = len(a)
    ad, bd = a - fsum_mean(a), b - fsum_mean(b)
    out = []
    for k in lags:
        s = math.fsum(ad[: n - k] * bd[k:]) if k >= 0 else math.fsum(ad[-k:] * bd[: n + k])
        out.append(s / n)
    return np.array(out)


def validation(data):
    from statsmodels.tsa.stattools import acf as sm_acf, ccf as sm_ccf
    log("validation of arx221 (estimate rows 0..1399, validate rows 1400..1999):")
    na, nb, nk = 2, [2], [3]
    n = len(data["y"])
    ne = int(round(0.7 * n))
    means = {c: fsum_mean(data[c][:ne]) for c in ("u", "y")}
    y_all = data["y"] - means["y"]
    u_all = data["u"] - means["u"]
    ye, ue = y_all[:ne], u_all[:ne]
    yv, uv = y_all[ne:], u_all[ne:]
    est = estimate("validation-estimation", ye, [ue], na, nb, nk)
    th, t0 = np.array(est["theta"]), est["t0"]
    ys = simulate(th, yv, [uv], na, nb, nk, t0)
    fit_sim = fit_pct(yv[t0:], ys[t0:])
    check("validation simulation: loop vs scipy lfilter + lfiltic", ys[t0:],
          simulate_lfilter(th, yv, [uv], na, nb, nk, t0), 1e-12)
    phi_v, tgt_v = build_phi(yv, [uv], na, nb, nk, t0)
    pred = phi_v @ th
    fit_pred = fit_pct(tgt_v, pred)
    eps = tgt_v - pred
    uu = uv[t0:]
    m = len(eps)
    L = 25
    c_ee = xcov(eps, eps, range(0, L + 1))
    r_ee = c_ee / c_ee[0]
    lags = list(range(-L, L + 1))
    c_ue = xcov(uu, eps, lags)
    s_u, s_e = math.sqrt(xcov(uu, uu, [0])[0]), math.sqrt(c_ee[0])
    r_ue = c_ue / (s_u * s_e)
    check("residual acf: direct vs statsmodels acf(adjusted=False)", r_ee,
          sm_acf(eps, adjusted=False, nlags=L, fft=False), 1e-12)
    pos = sm_ccf(eps, uu, adjusted=False, fft=False, nlags=L + 1)   # corr(eps(t+k), u(t))
    neg = sm_ccf(uu, eps, adjusted=False, fft=False, nlags=L + 1)
    check("input-residual xcorr: direct vs statsmodels ccf", r_ue,
          np.concatenate([neg[1:][::-1], pos]), 1e-12)
    bound = Z99 / math.sqrt(m)
    max_acf = float(np.max(np.abs(r_ee[1:])))
    max_x = float(np.max(np.abs(r_ue)))
    out = {"dataset": "arx221.csv", "na": na, "nb": nb, "nk": nk, "N": n,
           "estimation_rows": [0, ne - 1], "validation_rows": [ne, n - 1], "means": means,
           "estimation": {"t0": t0, "N_used": est["N_used"], "theta": est["theta"],
                          "sd": est["sd"], "RSS": est["RSS"], "V": est["V"],
                          "lambda": est["lambda"]},
           "validation": {"N_val": len(yv), "t0": t0, "n_resid": m,
                          "fit_sim_pct": fit_sim, "fit_pred_pct": fit_pred,
                          "resid_mean": fsum_mean(eps),
                          "resid_acf_lags": list(range(0, L + 1)), "resid_acf": list(r_ee),
                          "xcorr_u_resid_lags": lags, "xcorr_u_resid": list(r_ue),
                          "bound99": bound, "max_abs_resid_acf_lag_ge1": max_acf,
                          "max_abs_xcorr": max_x,
                          "resid_acf_outside": [k for k in range(1, L + 1) if abs(r_ee[k]) > bound],
                          "xcorr_outside": [k for k, v in zip(lags, r_ue) if abs(v) > bound]}}
    write_json("validate_arx221.json", out)
    log("  validation fit_sim=%.4f%% fit_pred=%.4f%% n_resid=%d bound=%.5f max|acf(k>=1)|=%.4f"
        " max|xcorr|=%.4f outside: acf %s xcorr %s" % (fit_sim, fit_pred, m, bound, max_acf,
                                                      max_x, out["validation"]["resid_acf_outside"],
                                                      out["validation"]["xcorr_outside"]))


def main():
    log("versions: python %s, numpy %s, scipy %s, statsmodels %s, mpmath %s"
        % (sys.version.split()[0], np.__version__, scipy.__version__, statsmodels.__version__,
           mpmath.__version__))
    d221, t221 = make_arx221()
    dmiso, tmiso = make_miso()
    dbig, tbig = make_big()
    dill, till = make_ill()
    for name, data, inputs, na, nb, nk, tt in (
            ("arx221", d221, ["u"], 2, [2], [3], t221),
            ("arx_miso", dmiso, ["u1", "u2"], 2, [2, 1], [1, 4], tmiso),
            ("arx_big", dbig, ["u"], 20, [17], [50], tbig),
            ("arx_ill", dill, ["u"], 1, [1], [1], till)):
        ref, _, _ = reference(name, data, inputs, na, nb, nk, tt)
        if name == "arx_ill":
            ill_conditioning(data, ref)
        write_json(name + "_ref.json", ref)
    order_search(d221)
    validation(d221)
    # measured data (no truth), after the synthetic sets so their log lines stay as they were
    dice = make_ice_river()
    ice_river_orders(dice)
    ref, _, _ = reference("ice_river", dice, ["prec", "temp"], 4, [2, 1], [0, 0], None,
                          output="flow_jok")
    ref["source"] = ICE_SOURCE
    write_json("ice_river_ref.json", ref)
    write_text("selfcheck.txt", "\n".join(LOG) + "\n", 100_000)
    log("all self-checks passed")


if __name__ == "__main__":
    main()
