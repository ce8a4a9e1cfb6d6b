#!/usr/bin/env bash
# Memory over time: one daemon with N cameras (for each N in CAMERAS) looping the 720p25
# demo video paced like live cameras (realtime = true, loop = true: the camera seeks back to
# the start at the end of the file) in the default mode, for DURATION seconds from the first
# camera online. The daemon's resident set (VmRSS of /proc/PID/status) is sampled every INTERVAL seconds; at the end the
# daemon gets SIGTERM and writes its run report. Prints a Markdown table: RSS first / last /
# max and its slope (least squares over all samples, and over the second half, after the
# warm-up); the samples go to $OUT/soak-N.tsv.
#
#   CAMERAS="1"            e.g. "1 4"
#   DURATION=600           seconds per daemon
#   INTERVAL=10            seconds between samples
#   SECONDS_OF_VIDEO=16    length of the looped video
#   DEVICE=auto THREADS=2  as in bench_cameras.sh
#   OUT=folder             default: a new temporary folder
#   FACEGATE_BIN=target/release/facegate
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FACEGATE_BIN:-target/release/facegate}
cameras=${CAMERAS:-1}
duration=${DURATION:-600}
interval=${INTERVAL:-10}
seconds=${SECONDS_OF_VIDEO:-16}
device=${DEVICE:-auto}
threads=${THREADS:-2}
# shellcheck source=scripts/bench_lib.sh
source scripts/bench_lib.sh

for n in $cameras; do need_count CAMERAS "$n"; done
need_count DURATION "$duration"
need_count INTERVAL "$interval"
need_count SECONDS_OF_VIDEO "$seconds"
[[ $threads =~ ^[0-9]+$ ]] || { echo "error: THREADS must be a whole number (0 = one per core), not '$threads'" >&2; exit 2; }
((interval < duration)) || { echo "error: INTERVAL ($interval) must be shorter than DURATION ($duration)" >&2; exit 2; }

out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/facegate-bench-soak.XXXXXX")}
mkdir -p "$out"
out=$(cd "$out" && pwd)
prepare_video_and_gallery "$seconds"

# Runs one daemon for DURATION seconds, sampling its RSS into soak-N.tsv (seconds, KiB).
soak() { # N
  local n=$1 name="soak-$1" pid start now rss i
  write_config "$name" "$n" 10 10 live loop
  echo "$name: $duration s (load $(load_average))" >&2
  "$bin" --device "$device" --config "$out/$name.toml" run --report "$out/$name.json" 2>"$out/$name.log" &
  pid=$!
  # The clock starts when the first camera is online: models loaded, frames flowing.
  for ((i = 0; i < 600; i++)); do
    grep -q "camera online" "$out/$name.log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  printf 'seconds\trss_kib\n' >"$out/$name.tsv"
  start=$(date +%s)
  while now=$(($(date +%s) - start)); ((now <= duration)); do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || rss=
    if [[ -z $rss ]]; then
      echo "error: the daemon stopped after $now s; the end of its log:" >&2
      tail -n 20 "$out/$name.log" >&2
      exit 1
    fi
    printf '%s\t%s\n' "$now" "$rss" >>"$out/$name.tsv"
    sleep "$interval"
  done
  kill -TERM "$pid"
  wait "$pid" || { echo "error: the daemon did not stop cleanly: see $out/$name.log" >&2; exit 1; }
  echo "load after $name: $(load_average)" >&2
}

for n in $cameras; do soak "$n"; done

python3 - "$out" "$cameras" <<'PY'
import json, os, sys
out, counts = sys.argv[1], sys.argv[2].split()

def slope(pts):  # KiB per minute, least squares
    if len(pts) < 2:
        return 0.0
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return 60 * sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else 0.0

print("| cameras | seconds | samples | RSS first / last / max MiB | slope KiB/min, all | slope KiB/min, 2nd half | frames decoded | dropped | frame→publish p50 / p99 ms | CPU ms / frame |")
print("|---|---|---|---|---|---|---|---|---|---|")
for n in counts:
    rows = [line.split("\t") for line in open(os.path.join(out, f"soak-{n}.tsv")).read().split("\n")[1:] if line]
    pts = [(int(t), int(k)) for t, k in rows]
    rss = [k for _, k in pts]
    r = json.load(open(os.path.join(out, f"soak-{n}.json")))
    half = pts[len(pts) // 2:]
    print(f"| {n} | {pts[-1][0]} | {len(pts)} | {rss[0] / 1024:.0f} / {rss[-1] / 1024:.0f} / {max(rss) / 1024:.0f} "
          f"| {slope(pts):+.0f} | {slope(half):+.0f} | {r['frames_decoded']} | {r['frames_dropped']} "
          f"| {r['frame_to_publish_p50_ms']:.0f} / {r['frame_to_publish_p99_ms']:.0f} | {r['cpu_ms_per_frame']:.1f} |")
PY
echo "raw samples and reports: $out" >&2
