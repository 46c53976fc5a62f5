#!/usr/bin/env bash
# Copies the /proc and /sys files that `vmmon record` reads into DIR/proc and DIR/sys, so a
# captured tree can be replayed with `vmmon record --proc-root DIR/proc --sys-root DIR/sys`.
# Usage: testdata/proc/capture.sh DIR
set -euo pipefail
dir=${1:?usage: capture.sh DIR}
mkdir -p "$dir/proc/net" "$dir/proc/sys/kernel/random" "$dir/sys/block"
for f in stat loadavg meminfo vmstat diskstats net/dev sys/kernel/hostname sys/kernel/osrelease \
         sys/kernel/random/boot_id; do
  cat "/proc/$f" > "$dir/proc/$f"
done
if [ -d /proc/pressure ]; then
  mkdir -p "$dir/proc/pressure"
  for r in cpu memory io; do cat "/proc/pressure/$r" > "$dir/proc/pressure/$r"; done
fi
for b in /sys/block/*; do
  mkdir -p "$dir/sys/block/$(basename "$b")"
  cat "$b/dev" > "$dir/sys/block/$(basename "$b")/dev"
done
