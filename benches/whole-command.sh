#!/usr/bin/env bash
# Whole-command figures for docs/performance.md, with public tools only:
#   1. CPU per sample: vmmon record vs sysstat's sadc, side by side at 1 Hz (/usr/bin/time -v)
#      and vmmon alone at 100 Hz;
#   2. schedule keeping at 100 Hz and 1000 Hz for 60 s (lateness from the metadata sidecar);
#   3. memory: RSS of a 100 Hz recording after 10 s and after 10 min (MINUTES=0 skips it).
# Needs: a release build (cargo build --release), sysstat, GNU time. Takes ~4 min (+10 min).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/vmmon
sadc=${SADC:-/usr/lib/sysstat/sadc}
n=${SAMPLES:-120}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cpu_ms() { # /usr/bin/time -v log, samples -> ms of CPU per sample
  awk -v n="$2" -F': ' '/User time/{u=$2} /System time/{s=$2} /Maximum resident/{m=$2}
    END{printf "%.3f ms CPU/sample (user %.2f s + sys %.2f s over %d samples), max RSS %d KiB\n",
        1000*(u+s)/n, u, s, n, m}' "$1"
}

echo "== CPU per sample, $n samples at 1 Hz, run side by side"
/usr/bin/time -v "$sadc" -S DISK 1 $((n + 1)) "$out/sa.data" 2>"$out/sadc.time" &
/usr/bin/time -v "$bin" record --rate 1 --max "$n" -o "$out/v1.csv" 2>"$out/v1.time" &
wait
printf 'sadc -S DISK : '; cpu_ms "$out/sadc.time" $((n + 1))
printf 'vmmon record : '; cpu_ms "$out/v1.time" $((n + 1))

echo "== CPU per sample, 6000 samples at 100 Hz"
/usr/bin/time -v "$bin" record --rate 100 --max 6000 -o "$out/v100.csv" 2>"$out/v100.time"
printf 'vmmon record : '; cpu_ms "$out/v100.time" 6001

for rate in 100 1000; do
  echo "== schedule at $rate Hz for 60 s"
  "$bin" record --rate "$rate" --period 60 -o "$out/s$rate.csv"
  python3 - "$out/s$rate.csv.meta.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
l = m["lateness"]
print(f'rows {m["rows"]}, missed slots {m["missed_slots"]}, lateness p50 {l["p50_us"]:.0f} us, '
      f'p99 {l["p99_us"]:.0f} us, max {l["max_us"]:.0f} us')
PY
done

minutes=${MINUTES:-10}
if [ "$minutes" -gt 0 ]; then
  echo "== RSS of a 100 Hz recording over $minutes min"
  "$bin" record --rate 100 --period $((minutes * 60 + 5)) -o "$out/rss.csv" &
  pid=$!
  sleep 10; early=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  sleep $((minutes * 60 - 10)); late=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  wait $pid
  echo "RSS after 10 s: $early KiB; after $minutes min: $late KiB"
fi
