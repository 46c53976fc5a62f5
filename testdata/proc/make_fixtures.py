#!/usr/bin/env python3
"""Builds the fixture trees under testdata/proc from two real captures made with capture.sh
about a second apart (under a little disk, loopback and CPU load):

    ./capture.sh /tmp/cap0; <load>; ./capture.sh /tmp/cap1; ./make_fixtures.py /tmp/cap0 /tmp/cap1

basic/       the two captures as they are (t0, t1).
wrap/        eth0 rx_bytes wraps at 2^32 (4294967000 -> 500) and vda's write count goes back
             (a re-attached disk); every other counter as in basic.
vanished/    eth0 is gone in t1 and an interface veth7 appears.
oldkernel/   /proc/stat CPU lines with 7 fields (no steal, guest, guest_nice: Linux < 2.6.11),
             no /proc/pressure, no MemAvailable in meminfo.
"""
import pathlib, re, shutil, sys

here = pathlib.Path(__file__).resolve().parent
cap = [pathlib.Path(a) for a in sys.argv[1:3]]


def case(name):
    for i, c in enumerate(cap):
        dst = here / name / f"t{i}"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(c, dst)
    return [here / name / f"t{i}" for i in range(2)]


def edit(path, fn):
    path.write_text(fn(path.read_text()))


def net_field(text, iface, idx, value):
    out = []
    for line in text.splitlines(keepends=True):
        if line.strip().startswith(iface + ":"):
            name, rest = line.split(":", 1)
            f = rest.split()
            f[idx] = str(value)
            line = f"{name}: " + " ".join(f) + "\n"
        out.append(line)
    return "".join(out)


def disk_field(text, dev, idx, value):
    out = []
    for line in text.splitlines(keepends=True):
        f = line.split()
        if len(f) > 3 and f[2] == dev:
            f[3 + idx] = str(value)
            line = " ".join(f) + "\n"
        out.append(line)
    return "".join(out)


case("basic")

t0, t1 = case("wrap")
edit(t0 / "proc/net/dev", lambda t: net_field(t, "eth0", 0, 4294967000))
edit(t1 / "proc/net/dev", lambda t: net_field(t, "eth0", 0, 500))
edit(t1 / "proc/diskstats", lambda t: disk_field(t, "vda", 4, 7))

t0, t1 = case("vanished")
edit(t1 / "proc/net/dev",
     lambda t: "".join(l for l in t.splitlines(keepends=True) if "eth0:" not in l)
     + "  veth7:     100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0\n")

for t in case("oldkernel"):
    edit(t / "proc/stat", lambda s: re.sub(
        r"^(cpu\d*)((?: +\d+){7})(?: +\d+)*$", r"\1\2", s, flags=re.M))
    shutil.rmtree(t / "proc/pressure")
    edit(t / "proc/meminfo",
         lambda s: "".join(l for l in s.splitlines(keepends=True) if not l.startswith("MemAvailable")))
