#!/usr/bin/env python3
"""Reference figures for `vmmon charge`, computed independently of vmmon with numpy and
scipy.optimize.nnls (Lawson–Hanson, scipy's own C implementation).

Writes, next to this script:
  host3.csv        a host trace as `vmmon record --vms` writes it: three VMs, 120 intervals,
                   jittered interval lengths, some empty cells, and a pool that is a known
                   base + cost per packet + cost per disk byte (+ noise); see simulate().
  host3_ref.json   what `vmmon charge host3.csv` must print for --by packets, bytes, disk,
                   mixed and --calibrate: every per-interval charge and the summary rows.
  nnls_cases.json  NNLS problems (A, b) and scipy's solutions, for the solver on its own.
  selfcheck.txt    figures a person can eyeball (true vs fitted costs).

Run: python3 make_refs.py   (numpy 2.4.6, scipy 1.17.1; about a second). Reruns are byte-identical.
"""

import json
import os

import numpy as np
from scipy.optimize import nnls

HERE = os.path.dirname(os.path.abspath(__file__))
VMS = ["vm1", "db_2", "web3"]
N = 120
# True costs of the simulated host (pool CPU-seconds per unit of I/O).
BASE = 0.03  # CPU-s per second: 3 % of one CPU with no guest I/O
BETA_PACKETS = 4e-6  # CPU-s per packet (4 µs)
BETA_BYTES = 0.0  # network bytes cost nothing beyond their packets
BETA_DISK = 1.5e-9  # CPU-s per disk byte (1.5 ms per MB)
NOISE_PCT = 0.4  # sd of the pool's noise, percent of one CPU
PARTS = ["pool_softirq_cpu_pct", "pool_ksoftirqd_cpu_pct", "pool_iothreads_cpu_pct"]
METRICS = [
    "vcpu_cpu_pct",
    "emulator_cpu_pct",
    "vhost_cpu_pct",
    "process_cpu_pct",
    "guest_cpu_pct",
    "vcpu_run_delay_pct",
    "net_guest_rx_bytes_per_s",
    "net_guest_tx_bytes_per_s",
    "net_guest_rx_packets_per_s",
    "net_guest_tx_packets_per_s",
    "disk_read_bytes_per_s",
    "disk_write_bytes_per_s",
]


def fmt(v):
    """A cell: empty for NaN, else rounded as a recorder writes (3 decimals)."""
    if np.isnan(v):
        return ""
    return repr(float(round(v, 3)))


def simulate(rng):
    n = N
    dt = 1.0 + rng.uniform(-0.003, 0.003, n)
    elapsed = np.cumsum(dt)
    time = 1795437237.0 + elapsed
    cols = {}
    # Traffic: vm1 mostly small packets, db_2 disk-heavy, web3 large packets, switching off
    # for a while; bursts so that the columns vary independently.
    for k, vm in enumerate(VMS):
        on = np.ones(n)
        if vm == "web3":
            on[40:55] = 0.0
        pps = on * rng.uniform(0, [20000, 3000, 12000][k], n)
        size = rng.uniform([80, 200, 900][k], [300, 600, 1500][k], n)
        rx_share = rng.uniform(0.3, 0.7, n)
        disk = on * rng.uniform(0, [5e6, 120e6, 20e6][k], n)
        rd_share = rng.uniform(0.2, 0.8, n)
        cols[f"{vm}.net_guest_rx_packets_per_s"] = pps * rx_share
        cols[f"{vm}.net_guest_tx_packets_per_s"] = pps * (1 - rx_share)
        cols[f"{vm}.net_guest_rx_bytes_per_s"] = pps * size * rx_share
        cols[f"{vm}.net_guest_tx_bytes_per_s"] = pps * size * (1 - rx_share)
        cols[f"{vm}.disk_read_bytes_per_s"] = disk * rd_share
        cols[f"{vm}.disk_write_bytes_per_s"] = disk * (1 - rd_share)
        vcpu = rng.uniform(5, 190, n)
        emu = 1 + pps * 2e-4 + disk * 3e-8 + rng.uniform(0, 2, n)
        vhost = pps * 8e-4 + rng.uniform(0, 1, n)
        cols[f"{vm}.vcpu_cpu_pct"] = vcpu
        cols[f"{vm}.emulator_cpu_pct"] = emu
        cols[f"{vm}.vhost_cpu_pct"] = vhost
        cols[f"{vm}.process_cpu_pct"] = vcpu + emu
        cols[f"{vm}.guest_cpu_pct"] = vcpu * 0.9
        cols[f"{vm}.vcpu_run_delay_pct"] = rng.uniform(0, 5, n)
    # Round the I/O as the file will hold it, so the pool is built from what vmmon reads.
    for name in cols:
        cols[name] = np.round(cols[name], 3)
    packets = sum(
        cols[f"{vm}.net_guest_rx_packets_per_s"] + cols[f"{vm}.net_guest_tx_packets_per_s"]
        for vm in VMS
    )
    nbytes = sum(
        cols[f"{vm}.net_guest_rx_bytes_per_s"] + cols[f"{vm}.net_guest_tx_bytes_per_s"]
        for vm in VMS
    )
    disk = sum(
        cols[f"{vm}.disk_read_bytes_per_s"] + cols[f"{vm}.disk_write_bytes_per_s"] for vm in VMS
    )
    pool_pct = 100 * (BASE + BETA_PACKETS * packets + BETA_BYTES * nbytes + BETA_DISK * disk)
    pool_pct = np.maximum(pool_pct + rng.normal(0, NOISE_PCT, n), 0)
    soft = rng.uniform(0.5, 0.7, n)
    ksoft = rng.uniform(0.1, 0.2, n)
    cols["pool_softirq_cpu_pct"] = np.round(pool_pct * soft, 3)
    cols["pool_ksoftirqd_cpu_pct"] = np.round(pool_pct * ksoft, 3)
    cols["pool_iothreads_cpu_pct"] = np.round(pool_pct * (1 - soft - ksoft), 3)
    own = sum(
        cols[f"{vm}.vcpu_cpu_pct"] + cols[f"{vm}.emulator_cpu_pct"] + cols[f"{vm}.vhost_cpu_pct"]
        for vm in VMS
    )
    cols["busy_cpu_pct"] = np.round(own + pool_pct + rng.uniform(5, 15, n), 3)
    # Empty cells: web3 exits for the last 6 rows; one packets cell of vm1 and one pool cell
    # unreadable; one busy cell missing.
    for m in METRICS:
        cols[f"web3.{m}"][-6:] = np.nan
    cols["vm1.net_guest_rx_packets_per_s"][17] = np.nan
    cols["pool_iothreads_cpu_pct"][29] = np.nan
    cols["busy_cpu_pct"][33] = np.nan
    header = ["time", "elapsed", "busy_cpu_pct"] + PARTS
    header += [f"{vm}.{m}" for vm in VMS for m in METRICS]
    lines = [",".join(header)]
    for t in range(n):
        row = [f"{time[t]:.6f}", f"{elapsed[t]:.6f}"] + [fmt(cols[h][t]) for h in header[2:]]
        lines.append(",".join(row))
    with open(os.path.join(HERE, "host3.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")


def read_trace():
    """The trace as vmmon sees it: the file's text parsed back (not the simulation's
    floats), so the reference depends only on the file."""
    with open(os.path.join(HERE, "host3.csv")) as f:
        rows = [line.rstrip("\n").split(",") for line in f]
    header = rows[0]
    data = {h: np.array([float(r[i]) if r[i] != "" else np.nan for r in rows[1:]])
            for i, h in enumerate(header)}
    times = [r[0] for r in rows[1:]]
    e = data["elapsed"]
    d = np.diff(e)
    dt = np.concatenate([[np.sort(d)[len(d) // 2]], d])
    return data, times, dt


def z(x):
    """Empty (NaN) as 0."""
    return np.nan_to_num(x, nan=0.0)


def shares_of(w):
    """Rows: intervals; columns: VMs. Shares w / Σw, or NaN rows when Σw = 0."""
    tot = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(tot > 0, w / np.where(tot > 0, tot, 1), np.nan)
    return s


def nanmean_rows(parts):
    """Element-wise mean of the share matrices, per interval over those that are not NaN."""
    stack = np.stack(parts)  # (k, n, vms)
    ok = ~np.isnan(stack[:, :, 0])  # (k, n)
    total = np.where(ok[:, :, None], stack, 0).sum(axis=0)
    cnt = ok.sum(axis=0)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, total / np.where(cnt > 0, cnt, 1), np.nan)


def features(data, dt):
    """Per feature, an (n, vms) matrix of amounts (rate × dt, empty = 0)."""
    f = {}
    for name, (a, b) in {
        "packets": ("net_guest_rx_packets_per_s", "net_guest_tx_packets_per_s"),
        "bytes": ("net_guest_rx_bytes_per_s", "net_guest_tx_bytes_per_s"),
        "disk": ("disk_read_bytes_per_s", "disk_write_bytes_per_s"),
    }.items():
        f[name] = np.stack(
            [(z(data[f"{vm}.{a}"]) + z(data[f"{vm}.{b}"])) * dt for vm in VMS], axis=1
        )
    return f


def calibrate(data, dt):
    n = len(dt)
    io_cols = [f"{vm}.{m}" for vm in VMS for m in METRICS[6:]]
    ok = np.ones(n, bool)
    for c in PARTS + io_cols:
        ok &= ~np.isnan(data[c])
    pool = sum(data[p] for p in PARTS) / 100 * dt
    feats = features(data, dt)
    y = pool[ok]
    X = np.column_stack([dt[ok]] + [feats[k].sum(axis=1)[ok] for k in ("packets", "bytes", "disk")])
    scale = np.sqrt((X**2).mean(axis=0))
    ys = np.sqrt((y**2).mean())
    zsol, _ = nnls(X / scale, y / ys)
    beta = zsol * ys / scale
    fitted = X @ beta
    rss = ((y - fitted) ** 2).sum()
    tss = ((y - y.mean()) ** 2).sum()
    # The unconstrained fit, to show what the constraint did.
    ls = np.linalg.lstsq(X / scale, y / ys, rcond=None)[0] * ys / scale
    return {
        "intervals_used": int(ok.sum()),
        "intervals_skipped": int(n - ok.sum()),
        "beta": [float(v) for v in beta],
        "unconstrained_beta": [float(v) for v in ls],
        "r2": float(1 - rss / tss),
        "fit_pct": float(100 * (1 - np.sqrt(rss / tss))),
        "residual_rms_cpu_s": float(np.sqrt(rss / len(y))),
        "residual_rms_pct": float(np.sqrt((((y - fitted) / dt[ok] * 100) ** 2).mean())),
        "base_share_pct": float(beta[0] * dt[ok].sum() / y.sum() * 100),
        "condition": float(np.linalg.cond(X / scale)),
    }


def charge(data, times, dt, method, cal=None):
    n = len(dt)
    pool = sum(z(data[p]) for p in PARTS) / 100 * dt
    feats = features(data, dt)
    base = np.zeros(n)
    if method == "calibrated":
        b = cal["beta"]
        w = b[1] * feats["packets"] + b[2] * feats["bytes"] + b[3] * feats["disk"]
        shares = shares_of(w)
        base = b[0] * dt
    elif method == "mixed":
        net = nanmean_rows([shares_of(feats["packets"]), shares_of(feats["bytes"])])
        shares = nanmean_rows([net, shares_of(feats["disk"])])
    else:
        shares = shares_of(feats[method])
    unattr = np.where(pool > 0, np.minimum(base / np.where(pool > 0, pool, 1), 1.0), 0.0)
    none = np.isnan(shares[:, 0])
    unattr = np.where(none, 1.0, unattr)
    frac = np.where(none[:, None], 0.0, shares * (1 - unattr)[:, None])
    shared = frac * pool[:, None]
    own = {}
    for part in ("vcpu", "emulator", "vhost"):
        own[part] = np.stack([data[f"{vm}.{part}_cpu_pct"] / 100 * dt for vm in VMS], axis=1)
    charged = z(own["vcpu"]) + z(own["emulator"]) + z(own["vhost"]) + shared
    overhead = z(own["emulator"]) + z(own["vhost"]) + shared
    busy = np.nansum(data["busy_cpu_pct"] / 100 * dt)
    summary = []
    for i, vm in enumerate(VMS):
        net_mb = feats["bytes"][:, i].sum() / 1e6
        disk_mb = feats["disk"][:, i].sum() / 1e6
        pk = feats["packets"][:, i].sum()
        ov = overhead[:, i].sum()
        summary.append({
            "vm": vm,
            "vcpu_cpu_s": np.nansum(own["vcpu"][:, i]),
            "emulator_cpu_s": np.nansum(own["emulator"][:, i]),
            "vhost_cpu_s": np.nansum(own["vhost"][:, i]),
            "shared_cpu_s": shared[:, i].sum(),
            "charged_cpu_s": charged[:, i].sum(),
            "busy_share_pct": charged[:, i].sum() / busy * 100,
            "net_mb": net_mb,
            "disk_mb": disk_mb,
            "mb_moved": net_mb + disk_mb,
            "packets": pk,
            "overhead_cpu_s": ov,
            "overhead_cpu_s_per_mb": ov / (net_mb + disk_mb),
            "overhead_cpu_s_per_1000_packets": ov / (pk / 1e3),
        })
    u = (unattr * pool).sum()
    summary.append({"vm": "(unattributed)", "shared_cpu_s": u, "charged_cpu_s": u,
                    "busy_share_pct": u / busy * 100, "overhead_cpu_s": u})
    tot = {k: sum(r.get(k, 0.0) for r in summary)
           for k in ("vcpu_cpu_s", "emulator_cpu_s", "vhost_cpu_s", "shared_cpu_s",
                     "charged_cpu_s", "net_mb", "disk_mb", "mb_moved", "packets",
                     "overhead_cpu_s")}
    tot["vm"] = "total"
    tot["busy_share_pct"] = tot["charged_cpu_s"] / busy * 100
    tot["overhead_cpu_s_per_mb"] = tot["overhead_cpu_s"] / tot["mb_moved"]
    tot["overhead_cpu_s_per_1000_packets"] = tot["overhead_cpu_s"] / (tot["packets"] / 1e3)
    summary.append(tot)
    summary = [{k: (v if isinstance(v, str) else float(v)) for k, v in r.items()} for r in summary]
    return {
        "pool_cpu_s": float(pool.sum()),
        "busy_cpu_s": float(busy),
        "shared_cpu_s": [[float(v) for v in row] for row in shared],
        "unattributed_cpu_s": [float(v) for v in unattr * pool],
        "share": [[float(v) for v in row] for row in frac],
        "charged_cpu_s": [[float(v) for v in row] for row in charged],
        "summary": summary,
    }


def nnls_cases(rng):
    cases = []
    shapes = [(10, 3), (50, 5), (200, 4), (30, 8), (6, 6), (100, 2), (1000, 4), (40, 12)]
    for k, (m, n) in enumerate(shapes):
        A = rng.normal(size=(m, n))
        if k % 2 == 1:
            # Non-negative, unevenly scaled columns like I/O counters.
            A = np.abs(A) * np.logspace(-3, 6, n)
        x_true = rng.normal(size=n)
        x_true[rng.permutation(n)[: n // 2]] = np.abs(x_true[: n // 2])
        if k % 2 == 1:
            x_true /= np.logspace(-3, 6, n)
        b = A @ x_true + 0.1 * np.abs(A @ x_true).mean() * rng.normal(size=m)
        x, rnorm = nnls(A, b)
        cases.append({
            "m": m, "n": n,
            "a": [float(v) for v in A.ravel()],
            "b": [float(v) for v in b],
            "x": [float(v) for v in x],
            "rnorm": float(rnorm),
            "active": int((x == 0).sum()),
        })
    return cases


def main():
    rng = np.random.default_rng(20261123)
    simulate(rng)
    data, times, dt = read_trace()
    cal = calibrate(data, dt)
    ref = {"vms": VMS, "time": times, "dt": [float(v) for v in dt], "calibration": cal}
    for method in ("packets", "bytes", "disk", "mixed"):
        ref[method] = charge(data, times, dt, method)
    ref["calibrated"] = charge(data, times, dt, "calibrated", cal)
    with open(os.path.join(HERE, "host3_ref.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    cases = nnls_cases(np.random.default_rng(7))
    with open(os.path.join(HERE, "nnls_cases.json"), "w") as f:
        json.dump(cases, f)
        f.write("\n")
    with open(os.path.join(HERE, "selfcheck.txt"), "w") as f:
        f.write("true      base, packets, bytes, disk: "
                f"{BASE!r}, {BETA_PACKETS!r}, {BETA_BYTES!r}, {BETA_DISK!r}\n")
        f.write(f"nnls      {cal['beta']}\n")
        f.write(f"lstsq     {cal['unconstrained_beta']}\n")
        f.write(f"R2 {cal['r2']:.6f}  fit {cal['fit_pct']:.3f} %  "
                f"residual {cal['residual_rms_pct']:.4f} % of a CPU  "
                f"condition {cal['condition']:.3f}\n")
        f.write("nnls cases: active constraints "
                f"{[c['active'] for c in cases]}\n")
    print(open(os.path.join(HERE, "selfcheck.txt")).read(), end="")


if __name__ == "__main__":
    main()
