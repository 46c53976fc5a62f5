//! An application's communication topology from its traffic matrix, as in Virtuoso's VTTIF:
//! symmetrise the matrix, normalise it by its largest entry, keep the edges at or above a
//! threshold, and score the kept graph against known patterns (all-to-all, ring, torus, mesh,
//! star, line, binary tree, tree) on the same nodes.
//!
//! A pattern's score is the Jaccard similarity of edge sets under the best node mapping found:
//! `matched / (observed + pattern − matched)`, where `matched` is the number of kept edges that
//! the mapped pattern also has. 1 means the kept graph *is* the pattern (under some labelling);
//! docs/network.md gives the details.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use anyhow::{Context, anyhow, bail};
use serde::Serialize;

/// A square matrix of non-negative traffic (bytes/s, or any rate) between named nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Node names, in the order of both the rows and the columns.
    pub names: Vec<String>,
    /// Row-major entries: `values[i * n + j]` is the traffic from node i to node j.
    pub values: Vec<f64>,
}

impl Matrix {
    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.names.len()
    }

    /// The entry from node `i` to node `j`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.values[i * self.n() + j]
    }
}

/// Reads a matrix CSV from `path` (`-` for standard input); see [`parse_matrix`].
pub fn read_matrix(path: &str) -> anyhow::Result<Matrix> {
    let (text, source) = if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut s)
            .context("cannot read the matrix from standard input")?;
        (s, "<stdin>".to_string())
    } else {
        let s = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
        (s, path.to_string())
    };
    parse_matrix(&text, &source)
}

/// Parses an N×N matrix CSV: a header whose first cell is anything (`src\dst`) followed by
/// the N node names, then one row per node (first cell its name, then N values). Rows may come
/// in any order but must name each header node once; empty cells are 0. Errors name
/// `source:line:column`.
pub fn parse_matrix(text: &str, source: &str) -> anyhow::Result<Matrix> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        None => bail!("{source}: empty: no header row"),
        Some(r) => r.with_context(|| format!("{source}:1: cannot read the header"))?,
    };
    let names: Vec<String> = header
        .iter()
        .skip(1)
        .map(|s| s.trim().to_string())
        .collect();
    let n = names.len();
    if n < 2 {
        bail!(
            "{source}:1: the header names {n} node(s); a topology needs at least 2 (first cell \
             `src\\dst`, then one name per column)"
        );
    }
    let mut index = HashMap::new();
    for (k, name) in names.iter().enumerate() {
        if name.is_empty() {
            bail!("{source}:1:{}: empty node name in the header", k + 2);
        }
        if index.insert(name.as_str(), k).is_some() {
            bail!("{source}:1:{}: column '{name}' appears twice", k + 2);
        }
    }
    let mut values = vec![0.0; n * n];
    let mut row_line: Vec<Option<u64>> = vec![None; n];
    for record in records {
        let record = record.with_context(|| format!("{source}: cannot read a row"))?;
        let line = record.position().map_or(0, csv::Position::line);
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let name = record.get(0).unwrap_or("").trim();
        let Some(&i) = index.get(name) else {
            bail!(
                "{source}:{line}: row '{name}' is not one of the header's names ({})",
                names.join(", ")
            );
        };
        if let Some(first) = row_line[i] {
            bail!("{source}:{line}: row '{name}' appears twice (first on line {first})");
        }
        if record.len() != n + 1 {
            bail!(
                "{source}:{line}: not square: row '{name}' has {} value(s), the header names {n} \
                 columns",
                record.len() - 1
            );
        }
        for (j, cell) in record.iter().skip(1).enumerate() {
            let col = j + 2;
            let cell = cell.trim();
            if cell.is_empty() {
                continue;
            }
            let v: f64 = cell
                .parse()
                .map_err(|_| anyhow!("{source}:{line}:{col}: '{cell}' is not a number"))?;
            if !v.is_finite() {
                bail!("{source}:{line}:{col}: {cell} is not a finite number");
            }
            if v < 0.0 {
                bail!("{source}:{line}:{col}: {cell} is negative; traffic cannot be");
            }
            values[i * n + j] = v;
        }
        row_line[i] = Some(line);
    }
    let missing: Vec<&str> = names
        .iter()
        .zip(&row_line)
        .filter(|(_, l)| l.is_none())
        .map(|(s, _)| s.as_str())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{source}: not square: the header names {n} columns but there are {} rows (no row \
             for {})",
            n - missing.len(),
            missing.join(", ")
        );
    }
    Ok(Matrix { names, values })
}

/// An undirected simple graph on nodes `0..n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    n: usize,
    adj: Vec<bool>,
    nbrs: Vec<Vec<usize>>,
    edges: usize,
}

impl Graph {
    /// A graph with `n` nodes and no edges.
    pub fn new(n: usize) -> Graph {
        Graph {
            n,
            adj: vec![false; n * n],
            nbrs: vec![Vec::new(); n],
            edges: 0,
        }
    }

    /// Adds the edge a–b (self-loops and repeated edges are ignored).
    pub fn add_edge(&mut self, a: usize, b: usize) {
        if a == b || self.adj[a * self.n + b] {
            return;
        }
        self.adj[a * self.n + b] = true;
        self.adj[b * self.n + a] = true;
        self.nbrs[a].push(b);
        self.nbrs[b].push(a);
        self.edges += 1;
    }

    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.edges
    }

    /// Whether a–b is an edge.
    pub fn has_edge(&self, a: usize, b: usize) -> bool {
        self.adj[a * self.n + b]
    }

    /// The neighbours of `a`.
    pub fn neighbors(&self, a: usize) -> &[usize] {
        &self.nbrs[a]
    }

    /// The degree of `a`.
    pub fn degree(&self, a: usize) -> usize {
        self.nbrs[a].len()
    }

    /// Every edge once, as (smaller, larger).
    pub fn edges(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::with_capacity(self.edges);
        for a in 0..self.n {
            for &b in &self.nbrs[a] {
                if a < b {
                    out.push((a, b));
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// The same graph with node `i` renamed `perm[i]` (`perm` is a permutation of `0..n`).
    pub fn permuted(&self, perm: &[usize]) -> Graph {
        let mut g = Graph::new(self.n);
        for (a, b) in self.edges() {
            g.add_edge(perm[a], perm[b]);
        }
        g
    }

    /// Number of connected components.
    pub fn components(&self) -> usize {
        let mut seen = vec![false; self.n];
        let mut count = 0;
        for s in 0..self.n {
            if seen[s] {
                continue;
            }
            count += 1;
            seen[s] = true;
            let mut stack = vec![s];
            while let Some(a) = stack.pop() {
                for &b in &self.nbrs[a] {
                    if !seen[b] {
                        seen[b] = true;
                        stack.push(b);
                    }
                }
            }
        }
        count
    }
}

/// A communication pattern, in the order used to break ties (the more specific first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// Complete graph: every pair communicates.
    AllToAll,
    /// A cycle through every node.
    Ring,
    /// A 2-D torus r×c (a grid with wrap-around), r, c ≥ 3.
    Torus,
    /// A 2-D grid r×c, r, c ≥ 2.
    Mesh,
    /// One centre connected to every other node.
    Star,
    /// A path through every node.
    Line,
    /// The complete binary tree in heap order (node k's children are 2k+1 and 2k+2).
    BinaryTree,
    /// Any spanning tree.
    Tree,
}

impl Pattern {
    /// Every pattern, in tie-breaking order.
    pub const ALL: [Pattern; 8] = [
        Pattern::AllToAll,
        Pattern::Ring,
        Pattern::Torus,
        Pattern::Mesh,
        Pattern::Star,
        Pattern::Line,
        Pattern::BinaryTree,
        Pattern::Tree,
    ];

    /// The pattern's name as written in the JSON (`all_to_all`, `binary_tree`, …).
    pub fn name(self) -> &'static str {
        match self {
            Pattern::AllToAll => "all_to_all",
            Pattern::Ring => "ring",
            Pattern::Torus => "torus",
            Pattern::Mesh => "mesh",
            Pattern::Star => "star",
            Pattern::Line => "line",
            Pattern::BinaryTree => "binary_tree",
            Pattern::Tree => "tree",
        }
    }

    /// The shapes (rows, columns) this pattern can take on `n` nodes: the factorisations for
    /// mesh and torus, a single `None` for the others, nothing where it does not exist.
    pub fn shapes(self, n: usize) -> Vec<Option<(usize, usize)>> {
        let grid = |min: usize| {
            (min..=n)
                .take_while(|r| r * r <= n)
                .filter(|r| n.is_multiple_of(*r) && n / r >= min)
                .map(|r| Some((r, n / r)))
                .collect()
        };
        match self {
            Pattern::Mesh => grid(2),
            Pattern::Torus => grid(3),
            Pattern::Ring if n < 3 => Vec::new(),
            _ if n < 2 => Vec::new(),
            _ => vec![None],
        }
    }

    /// The pattern's graph on `n` nodes with this shape (from [`Pattern::shapes`]); `None` for
    /// [`Pattern::Tree`], which stands for every spanning tree, and for shapes that do not fit.
    pub fn graph(self, n: usize, shape: Option<(usize, usize)>) -> Option<Graph> {
        let mut g = Graph::new(n);
        match (self, shape) {
            (Pattern::AllToAll, _) => {
                for a in 0..n {
                    for b in a + 1..n {
                        g.add_edge(a, b);
                    }
                }
            }
            (Pattern::Ring, _) if n >= 3 => {
                for a in 0..n {
                    g.add_edge(a, (a + 1) % n);
                }
            }
            (Pattern::Line, _) => {
                for a in 1..n {
                    g.add_edge(a - 1, a);
                }
            }
            (Pattern::Star, _) => {
                for a in 1..n {
                    g.add_edge(0, a);
                }
            }
            (Pattern::BinaryTree, _) => {
                for a in 1..n {
                    g.add_edge((a - 1) / 2, a);
                }
            }
            (Pattern::Mesh | Pattern::Torus, Some((r, c))) if r * c == n && r >= 2 && c >= 2 => {
                let wrap = self == Pattern::Torus;
                if wrap && (r < 3 || c < 3) {
                    return None;
                }
                for i in 0..r {
                    for j in 0..c {
                        let a = i * c + j;
                        if j + 1 < c {
                            g.add_edge(a, a + 1);
                        } else if wrap {
                            g.add_edge(a, i * c);
                        }
                        if i + 1 < r {
                            g.add_edge(a, a + c);
                        } else if wrap {
                            g.add_edge(a, j);
                        }
                    }
                }
            }
            _ => return None,
        }
        Some(g)
    }
}

/// The best mapping found of a pattern onto an observed graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Number of pattern edges that land on observed edges.
    pub overlap: usize,
    /// Whether `overlap` is proven to be the largest possible (it equals an upper bound).
    pub optimal: bool,
    /// `mapping[p]` is the observed node that pattern node `p` maps to.
    pub mapping: Vec<usize>,
}

/// Largest number of backtracking steps spent looking for an exact isomorphism.
const ISOMORPHISM_BUDGET: usize = 200_000;
/// Largest graph the search-based patterns are matched on (the exact ones have no limit).
pub const MAX_SEARCH_NODES: usize = 256;

/// An upper bound on the overlap: each node can carry at most min(its two degrees) common
/// edges, and pairing sorted degrees maximises that sum.
fn overlap_bound(obs: &Graph, pat: &Graph) -> usize {
    let mut a: Vec<usize> = (0..obs.n).map(|v| obs.degree(v)).collect();
    let mut b: Vec<usize> = (0..pat.n).map(|v| pat.degree(v)).collect();
    a.sort_unstable_by(|x, y| y.cmp(x));
    b.sort_unstable_by(|x, y| y.cmp(x));
    let s: usize = a.iter().zip(&b).map(|(x, y)| (*x).min(*y)).sum();
    (s / 2).min(obs.edges).min(pat.edges)
}

fn overlap_of(obs: &Graph, pat: &Graph, map: &[usize]) -> usize {
    pat.edges()
        .iter()
        .filter(|(a, b)| obs.has_edge(map[*a], map[*b]))
        .count()
}

/// Finds a mapping of `pat` onto `obs` (same number of nodes) with as many common edges as it
/// can: an exact isomorphism search when the edge counts and degree sequences agree, then a
/// greedy construction from many starts improved by swapping pairs of nodes. Deterministic.
pub fn best_match(obs: &Graph, pat: &Graph) -> Match {
    assert_eq!(obs.n, pat.n, "best_match needs graphs of the same size");
    let n = obs.n;
    let bound = overlap_bound(obs, pat);
    if n == 0 || bound == 0 {
        return Match {
            overlap: 0,
            optimal: true,
            mapping: (0..n).collect(),
        };
    }
    if obs.edges == pat.edges && bound == pat.edges {
        let mut budget = ISOMORPHISM_BUDGET;
        if let Some(mapping) = isomorphism(obs, pat, &mut budget) {
            return Match {
                overlap: pat.edges,
                optimal: true,
                mapping,
            };
        }
    }
    let (overlap, mapping) = heuristic(obs, pat, bound);
    Match {
        overlap,
        optimal: overlap == bound,
        mapping,
    }
}

/// Pattern nodes in breadth-first or depth-first order from `start`, then any nodes it does
/// not reach.
fn traversal(g: &Graph, start: usize, depth_first: bool) -> Vec<usize> {
    let mut seen = vec![false; g.n];
    let mut order = Vec::with_capacity(g.n);
    for s in std::iter::once(start).chain(0..g.n) {
        if seen[s] {
            continue;
        }
        if depth_first {
            let mut stack = vec![s];
            while let Some(a) = stack.pop() {
                if seen[a] {
                    continue;
                }
                seen[a] = true;
                order.push(a);
                for &b in g.nbrs[a].iter().rev() {
                    if !seen[b] {
                        stack.push(b);
                    }
                }
            }
        } else {
            seen[s] = true;
            let mut queue = VecDeque::from([s]);
            while let Some(a) = queue.pop_front() {
                order.push(a);
                for &b in &g.nbrs[a] {
                    if !seen[b] {
                        seen[b] = true;
                        queue.push_back(b);
                    }
                }
            }
        }
    }
    order
}

/// Backtracking search for an isomorphism (pattern → observed), nodes in breadth-first order,
/// each candidate adjacent to an already mapped neighbour's image and of the same degree.
fn isomorphism(obs: &Graph, pat: &Graph, budget: &mut usize) -> Option<Vec<usize>> {
    let n = obs.n;
    let order = traversal(pat, 0, false);
    let mut map = vec![usize::MAX; n];
    let mut used = vec![false; n];
    // Explicit stack of (position in order, next candidate index) to avoid deep recursion.
    let mut cands: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut next = vec![0usize; n];
    let mut k = 0;
    let candidates = |p: usize, map: &[usize], used: &[bool]| -> Vec<usize> {
        let anchor = pat.nbrs[p].iter().find(|&&q| map[q] != usize::MAX);
        let pool: Vec<usize> = match anchor {
            Some(&q) => obs.nbrs[map[q]].clone(),
            None => (0..n).collect(),
        };
        pool.into_iter()
            .filter(|&c| !used[c] && obs.degree(c) == pat.degree(p))
            .filter(|&c| {
                let mapped = pat.nbrs[p].iter().filter(|&&x| map[x] != usize::MAX);
                let mut want = 0;
                for &x in mapped {
                    if !obs.has_edge(c, map[x]) {
                        return false;
                    }
                    want += 1;
                }
                // No extra edges to mapped nodes either: non-edges map to non-edges.
                obs.nbrs[c].iter().filter(|&&y| used[y]).count() == want
            })
            .collect()
    };
    cands[0] = candidates(order[0], &map, &used);
    loop {
        if *budget == 0 {
            return None;
        }
        *budget -= 1;
        let p = order[k];
        if next[k] >= cands[k].len() {
            // Exhausted: step back.
            if k == 0 {
                return None;
            }
            k -= 1;
            let q = order[k];
            used[map[q]] = false;
            map[q] = usize::MAX;
            continue;
        }
        let c = cands[k][next[k]];
        next[k] += 1;
        map[p] = c;
        used[c] = true;
        if k + 1 == n {
            return Some(map);
        }
        k += 1;
        cands[k] = candidates(order[k], &map, &used);
        next[k] = 0;
    }
}

/// Greedy construction plus pair swaps from several starts; returns the best overlap found.
fn heuristic(obs: &Graph, pat: &Graph, bound: usize) -> (usize, Vec<usize>) {
    let n = obs.n;
    // One pattern start per distinct degree (a corner, an edge and an inner node of a mesh).
    let mut pat_starts: Vec<usize> = Vec::new();
    for p in 0..n {
        if pat_starts.len() < 3 && pat_starts.iter().all(|&q| pat.degree(q) != pat.degree(p)) {
            pat_starts.push(p);
        }
    }
    // Observed starts for a pattern start: every node of a small graph, else the 64 whose
    // degree is closest to the pattern start's.
    let obs_starts = |ps: usize| -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        v.sort_by_key(|&c| (obs.degree(c).abs_diff(pat.degree(ps)), c));
        v.truncate(64);
        v
    };
    let mut best = (0, (0..n).collect::<Vec<_>>());
    let mut first = true;
    for &ps in &pat_starts {
        let starts = obs_starts(ps);
        for variant in 0..3 {
            let order = traversal(pat, ps, variant == 1);
            for &os in &starts {
                let mut map = if variant == 2 {
                    greedy_constrained(obs, pat, &order, os)
                } else {
                    greedy_in_order(obs, pat, &order, os)
                };
                let ov = improve(obs, pat, &mut map);
                if first || ov > best.0 {
                    best = (ov, map);
                    first = false;
                }
                if best.0 == bound {
                    return best;
                }
            }
        }
    }
    // Errors made early by a greedy construction (an extra edge followed, a missing one
    // skipped) are not undone by single swaps: rebuild regions, then anneal.
    let (ov, map) = ruin_and_recreate(obs, pat, best.1.clone(), 30 * n, bound);
    if ov > best.0 {
        best = (ov, map);
    }
    if best.0 == bound {
        return best;
    }
    let (ov, map) = anneal(obs, pat, best.1.clone(), 3000 * n, bound);
    if ov > best.0 {
        best = (ov, map);
    }
    best
}

/// Change in overlap when pattern nodes `a` and `b` exchange their images.
fn swap_gain(obs: &Graph, pat: &Graph, map: &[usize], a: usize, b: usize) -> isize {
    let (ia, ib) = (map[a], map[b]);
    let mut g = 0isize;
    for &x in &pat.nbrs[a] {
        if x != b {
            g += obs.has_edge(ib, map[x]) as isize - obs.has_edge(ia, map[x]) as isize;
        }
    }
    for &y in &pat.nbrs[b] {
        if y != a {
            g += obs.has_edge(ia, map[y]) as isize - obs.has_edge(ib, map[y]) as isize;
        }
    }
    g
}

/// Simulated annealing over swaps (deterministic seed), mostly moves that put a node next to
/// the image of one of its pattern neighbours; returns the best mapping met.
fn anneal(
    obs: &Graph,
    pat: &Graph,
    mut map: Vec<usize>,
    iterations: usize,
    bound: usize,
) -> (usize, Vec<usize>) {
    let n = obs.n;
    if n < 3 {
        return (overlap_of(obs, pat, &map), map);
    }
    let mut inv = vec![0usize; n];
    for (p, &c) in map.iter().enumerate() {
        inv[c] = p;
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ n as u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut cur = overlap_of(obs, pat, &map) as isize;
    let mut best = (cur, map.clone());
    let (t0, t1) = (1.5f64, 0.05f64);
    for it in 0..iterations {
        let t = t0 * (t1 / t0).powf(it as f64 / iterations as f64);
        let a = (next() % n as u64) as usize;
        let nb = &pat.nbrs[a];
        let b = if next() % 5 != 0 && !nb.is_empty() {
            let y = map[nb[(next() % nb.len() as u64) as usize]];
            let on = &obs.nbrs[y];
            if on.is_empty() {
                (next() % n as u64) as usize
            } else {
                inv[on[(next() % on.len() as u64) as usize]]
            }
        } else {
            (next() % n as u64) as usize
        };
        if a == b {
            continue;
        }
        let d = swap_gain(obs, pat, &map, a, b);
        let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
        if d >= 0 || u < (d as f64 / t).exp() {
            map.swap(a, b);
            inv[map[a]] = a;
            inv[map[b]] = b;
            cur += d;
            if cur > best.0 {
                best = (cur, map.clone());
                if cur as usize == bound {
                    break;
                }
            }
        }
    }
    let mut map = best.1;
    let ov = improve(obs, pat, &mut map);
    (ov, map)
}

/// Maps pattern nodes in `order` one by one to the free observed node that keeps the most
/// pattern edges so far; ties go to the closest degree, then to the fewest free neighbours
/// (Warnsdorff's rule, which keeps paths from walling themselves in).
fn greedy_in_order(obs: &Graph, pat: &Graph, order: &[usize], first: usize) -> Vec<usize> {
    let n = obs.n;
    let mut map = vec![usize::MAX; n];
    let mut used = vec![false; n];
    map[order[0]] = first;
    used[first] = true;
    let mut stamp = vec![usize::MAX; n];
    for (step, &p) in order.iter().enumerate().skip(1) {
        let images: Vec<usize> = pat.nbrs[p]
            .iter()
            .filter(|&&x| map[x] != usize::MAX)
            .map(|&x| map[x])
            .collect();
        let mut pool: Vec<usize> = Vec::new();
        for &y in &images {
            for &c in &obs.nbrs[y] {
                if !used[c] && stamp[c] != step {
                    stamp[c] = step;
                    pool.push(c);
                }
            }
        }
        if pool.is_empty() {
            pool = (0..n).filter(|&c| !used[c]).collect();
        }
        let key = |c: usize| {
            let hits = images.iter().filter(|&&y| obs.has_edge(c, y)).count();
            let diff = obs.degree(c).abs_diff(pat.degree(p));
            let free = obs.nbrs[c].iter().filter(|&&y| !used[y]).count();
            (hits, std::cmp::Reverse(diff), std::cmp::Reverse(free))
        };
        let mut best = pool[0];
        let mut best_key = key(best);
        for &c in &pool[1..] {
            let k = key(c);
            if k > best_key || (k == best_key && c < best) {
                best = c;
                best_key = k;
            }
        }
        map[p] = best;
        used[best] = true;
    }
    map
}

/// Maps pattern nodes one by one, always the one with the most neighbours mapped already
/// (ties by their place in `order`), to the free observed node that agrees best with the
/// mapping so far: most pattern edges kept minus observed edges to mapped nodes that the
/// pattern does not have; then the closest degree, then the fewest free neighbours
/// (Warnsdorff's rule, which keeps paths from walling themselves in).
fn greedy_constrained(obs: &Graph, pat: &Graph, order: &[usize], first: usize) -> Vec<usize> {
    let n = obs.n;
    let mut rank = vec![0usize; n];
    for (k, &p) in order.iter().enumerate() {
        rank[p] = k;
    }
    let mut map = vec![usize::MAX; n];
    let mut inv = vec![usize::MAX; n];
    map[order[0]] = first;
    inv[first] = order[0];
    complete(obs, pat, &rank, &mut map, &mut inv);
    map
}

/// Fills the unmapped pattern nodes of a partial mapping (`usize::MAX` marks them, `inv` is
/// its inverse) the way [`greedy_constrained`] does, using the free observed nodes only.
fn complete(obs: &Graph, pat: &Graph, rank: &[usize], map: &mut [usize], inv: &mut [usize]) {
    let n = obs.n;
    let mut mapped_nbrs = vec![0usize; n];
    for p in (0..n).filter(|&p| map[p] != usize::MAX) {
        for &x in &pat.nbrs[p] {
            mapped_nbrs[x] += 1;
        }
    }
    let mut stamp = vec![usize::MAX; n];
    for step in 0..n {
        let Some(p) = (0..n)
            .filter(|&q| map[q] == usize::MAX)
            .max_by_key(|&q| (mapped_nbrs[q], std::cmp::Reverse(rank[q])))
        else {
            break;
        };
        let images: Vec<usize> = pat.nbrs[p]
            .iter()
            .filter(|&&x| map[x] != usize::MAX)
            .map(|&x| map[x])
            .collect();
        let mut pool: Vec<usize> = Vec::new();
        for &y in &images {
            for &c in &obs.nbrs[y] {
                if inv[c] == usize::MAX && stamp[c] != step {
                    stamp[c] = step;
                    pool.push(c);
                }
            }
        }
        if pool.is_empty() {
            pool = (0..n).filter(|&c| inv[c] == usize::MAX).collect();
        }
        let key = |c: usize| {
            let hits = images.iter().filter(|&&y| obs.has_edge(c, y)).count() as isize;
            let mut wrong = 0isize;
            let mut free = 0usize;
            for &y in &obs.nbrs[c] {
                if inv[y] == usize::MAX {
                    free += 1;
                } else if !pat.has_edge(p, inv[y]) {
                    wrong += 1;
                }
            }
            let diff = obs.degree(c).abs_diff(pat.degree(p));
            (
                hits - wrong,
                hits,
                std::cmp::Reverse(diff),
                std::cmp::Reverse(free),
            )
        };
        let mut best = pool[0];
        let mut best_key = key(best);
        for &c in &pool[1..] {
            let k = key(c);
            if k > best_key || (k == best_key && c < best) {
                best = c;
                best_key = k;
            }
        }
        map[p] = best;
        inv[best] = p;
        for &x in &pat.nbrs[p] {
            mapped_nbrs[x] += 1;
        }
    }
}

/// Large-neighbourhood search: repeatedly unmap a ball of the pattern around a node with an
/// unmatched edge (radius 1 to 4, with every such node and its neighbours every other time)
/// and map it again with [`complete`]; keeps the result when it
/// is no worse. Repairs the misplaced regions (a fold, a shift) that single swaps cannot.
fn ruin_and_recreate(
    obs: &Graph,
    pat: &Graph,
    mut map: Vec<usize>,
    iterations: usize,
    bound: usize,
) -> (usize, Vec<usize>) {
    let n = obs.n;
    let mut state = 0xD1B5_4A32_D192_ED03u64 ^ n as u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let rank: Vec<usize> = (0..n).collect();
    let mut best = overlap_of(obs, pat, &map);
    let mut dist = vec![usize::MAX; n];
    for _ in 0..iterations {
        if best == bound {
            break;
        }
        let bad: Vec<usize> = (0..n)
            .filter(|&p| pat.nbrs[p].iter().any(|&x| !obs.has_edge(map[p], map[x])))
            .collect();
        let centre = if bad.is_empty() {
            (next() % n as u64) as usize
        } else {
            bad[(next() % bad.len() as u64) as usize]
        };
        let radius = 1 + (next() % 4) as usize;
        let mut trial = map.clone();
        let mut inv = vec![usize::MAX; n];
        dist.fill(usize::MAX);
        dist[centre] = 0;
        let mut queue = VecDeque::from([centre]);
        // Every other time, also every node with an unmatched edge: the nodes a misplaced
        // region needs may sit in other misplaced places.
        if next() % 2 == 0 {
            for &b in &bad {
                if dist[b] == usize::MAX {
                    dist[b] = radius.saturating_sub(1);
                    queue.push_back(b);
                }
            }
        }
        while let Some(a) = queue.pop_front() {
            trial[a] = usize::MAX;
            if dist[a] < radius {
                for &b in &pat.nbrs[a] {
                    if dist[b] == usize::MAX {
                        dist[b] = dist[a] + 1;
                        queue.push_back(b);
                    }
                }
            }
        }
        if trial.iter().all(|&c| c == usize::MAX) {
            continue;
        }
        for (p, &c) in trial.iter().enumerate() {
            if c != usize::MAX {
                inv[c] = p;
            }
        }
        complete(obs, pat, &rank, &mut trial, &mut inv);
        let ov = overlap_of(obs, pat, &trial);
        if ov >= best {
            best = ov;
            map = trial;
        }
    }
    (best, map)
}

/// First-improvement local search over swaps of two pattern nodes' images.
fn improve(obs: &Graph, pat: &Graph, map: &mut [usize]) -> usize {
    let n = obs.n;
    for _pass in 0..50 {
        let mut improved = false;
        for a in 0..n {
            for b in a + 1..n {
                if swap_gain(obs, pat, map, a, b) > 0 {
                    map.swap(a, b);
                    improved = true;
                }
            }
        }
        if !improved {
            break;
        }
    }
    overlap_of(obs, pat, map)
}

/// How the two directions of a pair are combined into one undirected weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum, Default)]
#[serde(rename_all = "snake_case")]
pub enum Symmetrize {
    /// a→b plus b→a: the traffic the pair exchanges.
    #[default]
    Sum,
    /// The larger direction.
    Max,
}

/// Options of [`infer`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Edges whose normalised weight is below this are pruned (0 ≤ threshold ≤ 1).
    pub threshold: f64,
    /// How the directions are combined.
    pub symmetrize: Symmetrize,
    /// Below this best score the topology is reported as `unknown`.
    pub min_score: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threshold: 0.1,
            symmetrize: Symmetrize::Sum,
            min_score: 0.75,
        }
    }
}

/// A kept edge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    /// One end (the earlier in the matrix).
    pub a: String,
    /// The other end.
    pub b: String,
    /// Symmetrised value divided by the largest symmetrised value (0..1].
    pub weight: f64,
    /// Symmetrised value in the matrix's units.
    pub value: f64,
}

/// One pattern's score against the kept graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The pattern.
    pub pattern: Pattern,
    /// Rows × columns of the best mesh or torus shape (`"4x4"`), else null.
    pub shape: Option<String>,
    /// Whether the pattern exists on this many nodes (a mesh needs a composite number, …).
    pub applicable: bool,
    /// Jaccard similarity of the edge sets under the best mapping found (0..1).
    pub score: f64,
    /// Kept edges that the mapped pattern has too.
    pub matched_edges: usize,
    /// Edges of the pattern.
    pub pattern_edges: usize,
    /// Whether the score is proven to be the best over all mappings.
    pub optimal: bool,
    /// Share of the kept edges' total weight carried by the matched edges.
    pub weight_covered: f64,
    /// The node each pattern position maps to (ring and line in order; mesh and torus row
    /// by row; star centre first; binary tree in heap order); null for all-to-all and tree.
    pub mapping: Option<Vec<String>>,
}

/// The inferred topology: kept graph, best pattern and every candidate's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Topology {
    /// Every node of the matrix, in its order.
    pub nodes: Vec<String>,
    /// The pruning threshold on normalised weights.
    pub threshold: f64,
    /// How the two directions were combined.
    pub symmetrize: Symmetrize,
    /// The largest symmetrised value (the normalising divisor).
    pub max_value: f64,
    /// Kept edges, heaviest first.
    pub edges: Vec<Edge>,
    /// Node pairs with traffic that fell below the threshold.
    pub pruned_edges: usize,
    /// Nodes with no kept edge: left out of the pattern match.
    pub isolated: Vec<String>,
    /// Best pattern, or `unknown` when its score is below `min_score`.
    pub pattern: String,
    /// Best pattern's shape (mesh, torus), if any.
    pub shape: Option<String>,
    /// Best score.
    pub score: f64,
    /// Score below which the result is `unknown`.
    pub min_score: f64,
    /// Every pattern that reaches the best score (the first one is reported).
    pub ties: Vec<Pattern>,
    /// Every pattern's score, in tie-breaking order.
    pub candidates: Vec<Candidate>,
}

/// Symmetrises, normalises and prunes `m`, then scores every pattern; see the module doc.
pub fn infer(m: &Matrix, opts: &Options) -> anyhow::Result<Topology> {
    let n = m.n();
    if n < 2 {
        bail!("the matrix has {n} node(s); a topology needs at least 2");
    }
    if !(0.0..=1.0).contains(&opts.threshold) {
        bail!("threshold {} must be between 0 and 1", opts.threshold);
    }
    let mut sym = Vec::new();
    let mut max_value = 0.0f64;
    for a in 0..n {
        for b in a + 1..n {
            let (x, y) = (m.get(a, b), m.get(b, a));
            let v = match opts.symmetrize {
                Symmetrize::Sum => x + y,
                Symmetrize::Max => x.max(y),
            };
            if v.is_infinite() {
                bail!(
                    "{} ↔ {}: the two directions sum past the largest number ({x:e} + {y:e}); \
                     give the matrix in larger units or use --symmetrize max",
                    m.names[a],
                    m.names[b]
                );
            }
            if v > 0.0 {
                sym.push((a, b, v));
                max_value = max_value.max(v);
            }
        }
    }
    if max_value <= 0.0 {
        bail!("every entry off the diagonal is zero: there is no traffic to infer a topology from");
    }
    // Relative slack so that a weight equal to the threshold up to rounding is kept.
    let cut = opts.threshold * (1.0 - 1e-12);
    let mut kept: Vec<(usize, usize, f64, f64)> = sym
        .iter()
        .map(|&(a, b, v)| (a, b, v / max_value, v))
        .filter(|&(_, _, w, _)| w >= cut)
        .collect();
    let pruned_edges = sym.len() - kept.len();
    kept.sort_by(|x, y| y.2.total_cmp(&x.2).then((x.0, x.1).cmp(&(y.0, y.1))));
    let mut active_of = vec![usize::MAX; n];
    for &(a, b, _, _) in &kept {
        active_of[a] = 0;
        active_of[b] = 0;
    }
    let active: Vec<usize> = (0..n).filter(|&v| active_of[v] == 0).collect();
    for (k, &v) in active.iter().enumerate() {
        active_of[v] = k;
    }
    let isolated: Vec<String> = (0..n)
        .filter(|&v| active_of[v] == usize::MAX)
        .map(|v| m.names[v].clone())
        .collect();
    let k = active.len();
    let mut obs = Graph::new(k);
    let mut weight = vec![0.0; k * k];
    for &(a, b, w, _) in &kept {
        let (x, y) = (active_of[a], active_of[b]);
        obs.add_edge(x, y);
        weight[x * k + y] = w;
        weight[y * k + x] = w;
    }
    let total_weight: f64 = kept.iter().map(|e| e.2).sum();
    let name = |x: usize| m.names[active[x]].clone();
    let mut candidates = Vec::new();
    for pattern in Pattern::ALL {
        candidates.push(score_pattern(pattern, &obs, &weight, total_weight, &name));
    }
    let best = candidates
        .iter()
        .filter(|c| c.applicable)
        .fold(None::<&Candidate>, |acc, c| match acc {
            Some(b) if b.score >= c.score => Some(b),
            _ => Some(c),
        })
        .ok_or_else(|| anyhow!("no pattern applies to {k} nodes"))?;
    let ties = candidates
        .iter()
        .filter(|c| c.applicable && c.score == best.score)
        .map(|c| c.pattern)
        .collect();
    let unknown = best.score < opts.min_score;
    Ok(Topology {
        nodes: m.names.clone(),
        threshold: opts.threshold,
        symmetrize: opts.symmetrize,
        max_value,
        edges: kept
            .iter()
            .map(|&(a, b, w, v)| Edge {
                a: m.names[a].clone(),
                b: m.names[b].clone(),
                weight: w,
                value: v,
            })
            .collect(),
        pruned_edges,
        isolated,
        pattern: if unknown {
            "unknown".to_string()
        } else {
            best.pattern.name().to_string()
        },
        shape: if unknown { None } else { best.shape.clone() },
        score: best.score,
        min_score: opts.min_score,
        ties,
        candidates,
    })
}

fn jaccard(matched: usize, observed: usize, pattern: usize) -> f64 {
    let union = observed + pattern - matched;
    if union == 0 {
        1.0
    } else {
        matched as f64 / union as f64
    }
}

/// Scores one pattern (every shape it can take) against the kept graph `obs`.
fn score_pattern(
    pattern: Pattern,
    obs: &Graph,
    weight: &[f64],
    total_weight: f64,
    name: &dyn Fn(usize) -> String,
) -> Candidate {
    let k = obs.n;
    let e = obs.edges;
    let not_applicable = || Candidate {
        pattern,
        shape: None,
        applicable: false,
        score: 0.0,
        matched_edges: 0,
        pattern_edges: 0,
        optimal: true,
        weight_covered: 0.0,
        mapping: None,
    };
    let covered = |w: f64| {
        if total_weight > 0.0 {
            w / total_weight
        } else {
            0.0
        }
    };
    match pattern {
        Pattern::AllToAll => {
            let pe = k * (k - 1) / 2;
            Candidate {
                pattern,
                shape: None,
                applicable: true,
                score: jaccard(e, e, pe),
                matched_edges: e,
                pattern_edges: pe,
                optimal: true,
                weight_covered: 1.0,
                mapping: None,
            }
        }
        Pattern::Star => {
            // Exact: the centre goes to a node of largest degree (heaviest on ties).
            let w = |v: usize| -> f64 { obs.nbrs[v].iter().map(|&u| weight[v * k + u]).sum() };
            let centre = (0..k)
                .max_by(|&a, &b| {
                    obs.degree(a)
                        .cmp(&obs.degree(b))
                        .then(w(a).total_cmp(&w(b)))
                        .then(b.cmp(&a))
                })
                .unwrap_or(0);
            let matched = obs.degree(centre);
            let mut mapping = vec![name(centre)];
            mapping.extend((0..k).filter(|&v| v != centre).map(name));
            Candidate {
                pattern,
                shape: None,
                applicable: true,
                score: jaccard(matched, e, k - 1),
                matched_edges: matched,
                pattern_edges: k - 1,
                optimal: true,
                weight_covered: covered(w(centre)),
                mapping: Some(mapping),
            }
        }
        Pattern::Tree => {
            // Exact: a spanning forest of the kept graph extends to a spanning tree of the
            // complete graph, so the best overlap is k − components; Kruskal on the weights
            // gives the heaviest such forest.
            let mut edges: Vec<(usize, usize)> = obs.edges();
            edges.sort_by(|x, y| weight[y.0 * k + y.1].total_cmp(&weight[x.0 * k + x.1]));
            let mut parent: Vec<usize> = (0..k).collect();
            fn root(p: &mut [usize], mut x: usize) -> usize {
                while p[x] != x {
                    p[x] = p[p[x]];
                    x = p[x];
                }
                x
            }
            let (mut matched, mut w) = (0, 0.0);
            for (a, b) in edges {
                let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                if ra != rb {
                    parent[ra] = rb;
                    matched += 1;
                    w += weight[a * k + b];
                }
            }
            Candidate {
                pattern,
                shape: None,
                applicable: true,
                score: jaccard(matched, e, k - 1),
                matched_edges: matched,
                pattern_edges: k - 1,
                optimal: true,
                weight_covered: covered(w),
                mapping: None,
            }
        }
        _ => {
            let shapes = pattern.shapes(k);
            if shapes.is_empty() || k > MAX_SEARCH_NODES {
                return not_applicable();
            }
            let mut best: Option<Candidate> = None;
            for shape in shapes {
                let Some(pat) = pattern.graph(k, shape) else {
                    continue;
                };
                let m = best_match(obs, &pat);
                let score = jaccard(m.overlap, e, pat.edges);
                if best.as_ref().is_some_and(|b| b.score >= score) {
                    continue;
                }
                let w: f64 = pat
                    .edges()
                    .iter()
                    .map(|&(a, b)| (m.mapping[a], m.mapping[b]))
                    .filter(|&(x, y)| obs.has_edge(x, y))
                    .map(|(x, y)| weight[x * k + y])
                    .sum();
                best = Some(Candidate {
                    pattern,
                    shape: shape.map(|(r, c)| format!("{r}x{c}")),
                    applicable: true,
                    score,
                    matched_edges: m.overlap,
                    pattern_edges: pat.edges,
                    optimal: m.optimal,
                    weight_covered: covered(w),
                    mapping: Some(m.mapping.iter().map(|&v| name(v)).collect()),
                });
            }
            best.unwrap_or_else(not_applicable)
        }
    }
}

/// A short human summary of a topology (for standard error).
pub fn describe(t: &Topology) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "topo: {} nodes ({} isolated), {} edges kept at threshold {} ({} pruned); weights are \
         the {} of both directions over the largest, {}",
        t.nodes.len(),
        t.isolated.len(),
        t.edges.len(),
        t.threshold,
        t.pruned_edges,
        match t.symmetrize {
            Symmetrize::Sum => "sum",
            Symmetrize::Max => "larger",
        },
        t.max_value
    );
    let shape = t.shape.as_ref().map_or(String::new(), |s| format!(" {s}"));
    let _ = writeln!(
        s,
        "topo: best: {}{} (score {:.3})",
        t.pattern, shape, t.score
    );
    let mut parts = Vec::new();
    for c in &t.candidates {
        if c.applicable {
            let shape = c.shape.as_ref().map_or(String::new(), |s| format!(" {s}"));
            parts.push(format!("{}{} {:.3}", c.pattern.name(), shape, c.score));
        } else {
            parts.push(format!("{} n/a", c.pattern.name()));
        }
    }
    let _ = writeln!(s, "topo: scores: {}", parts.join(", "));
    s
}

/// Draws the kept graph as SVG: nodes on a circle in the best pattern's order (on a grid for
/// a mesh or torus), edge width and opacity by weight, labels, and the verdict as a title.
pub fn svg(t: &Topology) -> anyhow::Result<String> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    const W: u32 = 720;
    const H: u32 = 760;
    // Text is measured with the compiled-in font, which must be registered first.
    crate::plot::register_fonts();
    let best = t.candidates.iter().find(|c| c.pattern.name() == t.pattern);
    // Node order: the best mapping's, then the rest of the matrix's order.
    let mut order: Vec<&str> = Vec::new();
    if let Some(map) = best.and_then(|c| c.mapping.as_ref()) {
        order.extend(map.iter().map(String::as_str));
    }
    for name in &t.nodes {
        if !order.contains(&name.as_str()) {
            order.push(name);
        }
    }
    let (cx, cy, radius) = (W as f64 / 2.0, 40.0 + (H as f64 - 40.0) / 2.0, 270.0);
    let grid = best
        .filter(|c| matches!(c.pattern, Pattern::Mesh | Pattern::Torus))
        .and_then(|c| c.shape.as_ref())
        .and_then(|s| s.split_once('x'))
        .and_then(|(r, c)| Some((r.parse::<usize>().ok()?, c.parse::<usize>().ok()?)));
    let n = order.len();
    let mut pos: HashMap<&str, (i32, i32)> = HashMap::new();
    for (i, name) in order.iter().enumerate() {
        let p = match grid {
            Some((r, c)) if i < r * c => {
                let step = 2.0 * radius / (r.max(c) as f64 - 1.0).max(1.0);
                let x = cx - step * (c as f64 - 1.0) / 2.0 + step * (i % c) as f64;
                let y = cy - step * (r as f64 - 1.0) / 2.0 + step * (i / c) as f64;
                (x, y)
            }
            _ => {
                let a = std::f64::consts::TAU * i as f64 / n as f64 - std::f64::consts::FRAC_PI_2;
                (cx + radius * a.cos(), cy + radius * a.sin())
            }
        };
        pos.insert(name, (p.0.round() as i32, p.1.round() as i32));
    }
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<std::io::Error>| anyhow!("cannot draw the SVG: {e}");
        root.fill(&WHITE).map_err(err)?;
        let title = format!(
            "{}{}  score {:.3}  (threshold {}, {} edges kept)",
            t.pattern,
            t.shape.as_ref().map_or(String::new(), |s| format!(" {s}")),
            t.score,
            t.threshold,
            t.edges.len()
        );
        root.draw(&Text::new(title, (16, 16), ("sans-serif", 20).into_font()))
            .map_err(err)?;
        for e in t.edges.iter().rev() {
            let (Some(&a), Some(&b)) = (pos.get(e.a.as_str()), pos.get(e.b.as_str())) else {
                continue;
            };
            let color = RGBColor(30, 90, 170).mix(0.25 + 0.75 * e.weight);
            let width = (1.0 + 9.0 * e.weight).round() as u32;
            root.draw(&PathElement::new(vec![a, b], color.stroke_width(width)))
                .map_err(err)?;
        }
        let label = TextStyle::from(("sans-serif", 15).into_font())
            .pos(Pos::new(HPos::Center, VPos::Center));
        for name in &order {
            let p = pos[name];
            let isolated = t.isolated.iter().any(|s| s == name);
            let fill = if isolated {
                RGBColor(170, 170, 170)
            } else {
                RGBColor(200, 60, 40)
            };
            root.draw(&Circle::new(p, 9, fill.filled())).map_err(err)?;
            let (dx, dy) = ((p.0 as f64 - cx), (p.1 as f64 - cy));
            let len = (dx * dx + dy * dy).sqrt().max(1.0);
            let lp = (
                (p.0 as f64 + 26.0 * dx / len).round() as i32,
                (p.1 as f64 + 26.0 * dy / len - if len <= 1.0 { 22.0 } else { 0.0 }).round() as i32,
            );
            root.draw(&Text::new(name.to_string(), lp, label.clone()))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_the_factorisations() {
        assert_eq!(Pattern::Mesh.shapes(12), vec![Some((2, 6)), Some((3, 4))]);
        assert_eq!(Pattern::Torus.shapes(12), vec![Some((3, 4))]);
        assert!(Pattern::Torus.shapes(8).is_empty());
        assert!(Pattern::Mesh.shapes(7).is_empty());
        assert!(Pattern::Ring.shapes(2).is_empty());
        let t = Pattern::Torus.graph(9, Some((3, 3))).expect("3x3 torus");
        assert_eq!(t.edge_count(), 18);
        assert!((0..9).all(|v| t.degree(v) == 4));
        let m = Pattern::Mesh.graph(6, Some((2, 3))).expect("2x3 mesh");
        assert_eq!(m.edge_count(), 7);
    }

    #[test]
    fn isomorphic_graphs_match_fully() {
        let pat = Pattern::Mesh.graph(12, Some((3, 4))).expect("mesh");
        let perm = [5, 11, 0, 7, 2, 9, 1, 10, 3, 6, 8, 4];
        let obs = pat.permuted(&perm);
        let m = best_match(&obs, &pat);
        assert_eq!(m.overlap, pat.edge_count());
        assert!(m.optimal);
        assert_eq!(overlap_of(&obs, &pat, &m.mapping), pat.edge_count());
    }

    #[test]
    fn the_bound_proves_optimality() {
        let ring = Pattern::Ring.graph(6, None).expect("ring");
        let line = Pattern::Line.graph(6, None).expect("line");
        // A line sits inside a ring: 5 common edges, which the degree bound proves best.
        assert_eq!(overlap_bound(&ring, &line), 5);
        let m = best_match(&ring, &line);
        assert_eq!((m.overlap, m.optimal), (5, true));
        // Two triangles against a ring of 6: same degrees and edge count, not isomorphic.
        let mut two = Graph::new(6);
        for (a, b) in [(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3)] {
            two.add_edge(a, b);
        }
        let m = best_match(&two, &ring);
        assert_eq!(m.overlap, 4);
        assert!(!m.optimal);
    }
}
