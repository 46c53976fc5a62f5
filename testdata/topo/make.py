#!/usr/bin/env python3
"""Writes the example matrices of testdata/topo (deterministic; see README.md).

Each matrix is a pattern's edges with traffic between 0.5 and 1 MB/s split at random between
the two directions, node names shuffled, plus weak traffic (under 2% of the largest pair) on
some other pairs, which the default threshold of 0.1 prunes.
"""
import random

def ring(n):
    return [(i, (i + 1) % n) for i in range(n)]

def mesh(r, c):
    e = []
    for i in range(r):
        for j in range(c):
            a = i * c + j
            if j + 1 < c:
                e.append((a, a + 1))
            if i + 1 < r:
                e.append((a, a + c))
    return e

def star(n):
    return [(0, i) for i in range(1, n)]

def complete(n):
    return [(a, b) for a in range(n) for b in range(a + 1, n)]

def write(path, names, m, empty_diagonal=False, fmt="{:.3f}"):
    n = len(names)
    with open(path, "w") as f:
        f.write("src\\dst," + ",".join(names) + "\n")
        for i in range(n):
            cells = []
            for j in range(n):
                if i == j and empty_diagonal:
                    cells.append("")
                else:
                    cells.append(fmt.format(m[i][j]))
            f.write(names[i] + "," + ",".join(cells) + "\n")

def make(path, n, edges, seed, names=None, noise=True, empty_diagonal=False):
    rnd = random.Random(seed)
    perm = list(range(n))
    rnd.shuffle(perm)
    m = [[0.0] * n for _ in range(n)]
    es = {tuple(sorted((perm[a], perm[b]))) for a, b in edges}
    for a, b in sorted(es):
        w = 0.5e6 + 0.5e6 * rnd.random()
        f = rnd.random()
        m[a][b] = w * f
        m[b][a] = w * (1 - f)
    if noise:
        for a in range(n):
            for b in range(n):
                if a != b and tuple(sorted((a, b))) not in es and rnd.random() < 0.5:
                    m[a][b] = 0.01e6 * rnd.random()
    names = names or ["vm%d" % (k + 1) for k in range(n)]
    write(path, names, m, empty_diagonal)

def random_graph(n, p, seed):
    rnd = random.Random(seed)
    return [(a, b) for a in range(n) for b in range(a + 1, n) if rnd.random() < p]

make("ring8.csv", 8, ring(8), 1)
make("mesh3x4.csv", 12, mesh(3, 4), 2)
make("star6.csv", 6, star(6), 3, names=["head", "w1", "w2", "w3", "w4", "w5"])
make("all_to_all5.csv", 5, complete(5), 4)
make("unknown8.csv", 8, random_graph(8, 0.5, 5), 5)
# A bandwidth matrix in the style of `vmmon probe mesh --matrix`: empty diagonal, no noise.
make("ring4_probe.csv", 4, ring(4), 6, noise=False, empty_diagonal=True)
