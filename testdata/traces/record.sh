#!/usr/bin/env bash
# Records testdata/traces/host-5hz.csv: 120 s at 5 Hz on the project's 2-core VM while a
# varying load runs (CPU bursts of random length, file writes with fsync, short-lived
# processes), so that ARX(20,17,50) of the original experiment has real dynamics to fit.
# Usage: testdata/traces/record.sh [VMMON]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vmmon=${1:-target/release/vmmon}
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
(
  end=$((SECONDS + 125))
  while [ $SECONDS -lt $end ]; do
    burst=$((RANDOM % 3 + 1))
    timeout "$burst" sh -c 'while :; do :; done' || true
    dd if=/dev/zero of="$tmp/f" bs=64k count=$((RANDOM % 64 + 1)) conv=fsync status=none
    for _ in $(seq $((RANDOM % 20))); do /bin/true; done
    sleep "0.$((RANDOM % 9 + 1))"
  done
) &
"$vmmon" record --rate 5 --period 120 --name host --devices 'vda,lo,eth0' -o "$here/host-5hz.csv"
