#!/usr/bin/env python3
"""Traces and a PAIRS.csv for timing `vmmon fit --batch` (docs/performance.md).

    python3 benches/batch_traces.py DIR [TRACES] [ROWS]

writes DIR/trace00.csv … (default 10 traces of 10^4 rows at 1 Hz, each with 50 inputs
u00..u49 and 50 outputs y00..y49, y_j driven by u_j through a two-pole ARX) and
DIR/pairs.csv: 100 SISO ARX(4,4,1) models per trace, y_j on u_j and on u_{j+1}.
"""
import os
import sys

import numpy as np

out = sys.argv[1]
traces = int(sys.argv[2]) if len(sys.argv) > 2 else 10
rows = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(9)
pairs = ["trace,output,inputs,na,nb,nk,name"]
for f in range(traces):
    u = rng.standard_normal((rows, 50))
    e = 0.1 * rng.standard_normal((rows, 50))
    y = np.zeros((rows, 50))
    for t in range(2, rows):
        y[t] = 0.5 * y[t - 1] - 0.2 * y[t - 2] + u[t - 1] + 0.3 * u[t - 2] + e[t]
    time = 1_795_430_000 + np.arange(rows, dtype=float)
    data = np.column_stack([time, u, y + 40.0])
    header = "time," + ",".join([f"u{j:02}" for j in range(50)] + [f"y{j:02}" for j in range(50)])
    name = f"trace{f:02}.csv"
    np.savetxt(os.path.join(out, name), data, fmt=["%.6f"] + ["%.6f"] * 100, delimiter=",",
               header=header, comments="")
    for j in range(50):
        for k in (j, (j + 1) % 50):
            pairs.append(f"{name},y{j:02},u{k:02},4,4,1,t{f:02}_y{j:02}_u{k:02}")
with open(os.path.join(out, "pairs.csv"), "w") as fh:
    fh.write("\n".join(pairs) + "\n")
