#!/usr/bin/env bash
# Many cameras on one box: N copies of the 720p25 demo video as N cameras of one daemon
# (`facegate run --report FILE`), for each N in CAMERAS, in two modes and two pacings:
#   every    detect_fps = 0, tracker.embed_every = 1: every frame detected, every face embedded,
#            liveness off (the peer's work);
#   default  detect_fps = 10, tracker.embed_every = 10, liveness.mode = report (as shipped);
#   live     realtime = true: each file paced like a camera at 25 frames/s;
#   replay   realtime = false: every frame decoded, as fast as recognition takes them;
#   lockstep every camera plays the same file from its first frame: each new face appears
#            on all N cameras in the same frame (the worst case for latency);
#   staggered camera I of N plays the video starting (I-1)/N of a photo's 70 frames later
#            (black frames first), as cameras at different doors see people arrive.
# Beside them, the OpenCV peer (tests/reference/peer_video.py, every frame) as N concurrent
# processes on the same video. Prints Markdown tables; raw reports go to $OUT.
# Video frames/s: frames decoded over the run phase when paced (25 per camera while decoding
# keeps real time; recognition keeping up shows in frames dropped and latency), over
# recognition's wall time in a replay. CPU ms / frame: the process's user + system time
# over the run, per decoded frame.
#
#   CAMERAS="1 2 4 8"      camera counts
#   MODES="every default"  PACINGS="live replay"  STARTS="lockstep staggered"
#   SECONDS_OF_VIDEO=16    length of the demo video
#   DEVICE=auto            passed as --device (auto, cpu, openvino, cuda)
#   THREADS=2              inference.intra_threads, and the peer's --threads
#   PRECISION=fp32         inference.precision (fp32, bf16)
#   PEER=1                 0 skips the peer
#   OUT=folder             default: a new temporary folder
#   FACEGATE_BIN=target/release/facegate
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FACEGATE_BIN:-target/release/facegate}
cameras=${CAMERAS:-1 2 4 8}
modes=${MODES:-every default}
pacings=${PACINGS:-live replay}
starts=${STARTS:-lockstep}
seconds=${SECONDS_OF_VIDEO:-16}
device=${DEVICE:-auto}
threads=${THREADS:-2}
peer=${PEER:-1}
py="${FACEGATE_CACHE:-$HOME/.cache/facegate}/venv-ref/bin/python"
# shellcheck source=scripts/bench_lib.sh
source scripts/bench_lib.sh

for n in $cameras; do need_count CAMERAS "$n"; done
need_count SECONDS_OF_VIDEO "$seconds"
[[ $threads =~ ^[0-9]+$ ]] || { echo "error: THREADS must be a whole number (0 = one per core), not '$threads'" >&2; exit 2; }
for m in $modes; do [[ $m == every || $m == default ]] || { echo "error: MODES: '$m' is not every or default" >&2; exit 2; }; done
for p in $pacings; do [[ $p == live || $p == replay ]] || { echo "error: PACINGS: '$p' is not live or replay" >&2; exit 2; }; done
for s in $starts; do [[ $s == lockstep || $s == staggered ]] || { echo "error: STARTS: '$s' is not lockstep or staggered" >&2; exit 2; }; done
[[ $peer == 0 || $peer == 1 ]] || { echo "error: PEER must be 0 or 1, not '$peer'" >&2; exit 2; }

out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/facegate-bench-cameras.XXXXXX")}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [[ $peer == 1 ]]; then
  tests/reference/run --out "$(mktemp)" models/prepared/samples/sample1.jpg >/dev/null 2>&1 \
    || { echo "error: tests/reference/run failed: the peer's environment is not ready" >&2; exit 1; }
fi
prepare_video_and_gallery "$seconds"
echo "load before: $(load_average)" | tee "$out/load.txt" >&2
: >"$out/runs.txt"

run_daemon() { # NAME
  local name=$1
  echo "$name (load $(load_average))" >&2
  if ! "$bin" --device "$device" --config "$out/$name.toml" run --report "$out/$name.json" 2>"$out/$name.log"; then
    echo "error: facegate run failed for $name; the end of its log:" >&2
    tail -n 20 "$out/$name.log" >&2
    exit 1
  fi
}

# N peer processes at once on the same video; each prints its JSON to peer-N-I.json.
run_peers() { # N
  local n=$1 i pids=()
  echo "peer x$n (load $(load_average))" >&2
  for ((i = 1; i <= n; i++)); do
    (cd tests/reference && "$py" peer_video.py --models ../../models/prepared --threads "$threads" \
      --enroll ../../models/prepared/samples/sample1.jpg "$out/door.mp4" 2>"$out/peer-$n-$i.log") \
      >"$out/peer-$n-$i.json" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || { echo "error: a peer process failed: see $out/peer-$n-*.log" >&2; exit 1; }; done
}

for mode in $modes; do
  if [[ $mode == every ]]; then fps=0 every=1 liveness=off; else fps=10 every=10 liveness=report; fi
  for pacing in $pacings; do
    for start in $starts; do
      for n in $cameras; do
        name="$mode-$pacing-$start-$n"
        stagger=0
        [[ $start == staggered ]] && stagger=1 && make_staggered_videos "$n" "$seconds"
        write_config "$name" "$n" "$fps" "$every" "$pacing" eos "$liveness"
        run_daemon "$name"
        echo "$name $mode $pacing $n $start" >>"$out/runs.txt"
      done
    done
  done
done
if [[ $peer == 1 ]]; then
  for n in $cameras; do run_peers "$n"; done
fi
echo "load after: $(load_average)" | tee -a "$out/load.txt" >&2

python3 - "$out" "$cameras" "$peer" <<'PY'
import json, os, sys
out, counts, with_peer = sys.argv[1], [int(n) for n in sys.argv[2].split()], sys.argv[3] == "1"
runs = [line.split() for line in open(os.path.join(out, "runs.txt"))]
rep = {name: json.load(open(os.path.join(out, name + ".json"))) for name, *_ in runs}
label = {"every": "every frame", "default": "default", "live": "paced (live)", "replay": "replay"}

print("| mode | pacing | starts | cameras | video frames/s, all | per camera (min) | frame→publish p50 / p99 ms | CPU ms / frame | peak RSS MiB | frames dropped |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name, mode, pacing, n, start in runs:
    r = rep[name]
    # Paced: over the run phase, how long the cameras took to play the file (25 frames/s per
    # camera when decoding kept real time). Replay: over recognition's wall time.
    span = r["run_s"] if pacing == "live" else r["wall_s"]
    per = [c["frames_decoded"] / span if span > 0 else 0.0 for c in r["cameras"]]
    total = sum(per)
    print(f"| {label[mode]} | {label[pacing]} | {start} | {n} | {total:.1f} | {total / int(n):.1f} ({min(per):.1f}) "
          f"| {r['frame_to_publish_p50_ms']:.0f} / {r['frame_to_publish_p99_ms']:.0f} | {r['cpu_ms_per_frame']:.1f} "
          f"| {r['peak_rss_kib'] / 1024:.0f} | {r['frames_dropped']} of {r['frames_decoded']} |")

def slope(xs, ys):
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0

print()
print("| mode | pacing | starts | peak RSS MiB, by cameras | MiB per added camera (least squares) |")
print("|---|---|---|---|---|")
for key in dict.fromkeys((m, p, s) for _, m, p, _, s in runs):
    pts = [(int(n), rep[name]["peak_rss_kib"] / 1024) for name, m, p, n, s in runs if (m, p, s) == key]
    series = ", ".join(f"{n}: {y:.0f}" for n, y in pts)
    s = f"{slope([x for x, _ in pts], [y for _, y in pts]):.1f}" if len(pts) > 1 else "–"
    print(f"| {label[key[0]]} | {label[key[1]]} | {key[2]} | {series} | {s} |")

if with_peer:
    every = {int(n): rep[name] for name, m, p, n, s in runs if (m, p, s) == ("every", "replay", "lockstep")}
    print()
    print("| OpenCV peer processes | video frames/s, all | per process | facegate every frame, replay, same cameras | vs peer |")
    print("|---|---|---|---|---|")
    for n in counts:
        ps = [json.load(open(os.path.join(out, f"peer-{n}-{i}.json"))) for i in range(1, n + 1)]
        total = sum(p["frames"] for p in ps) / max(p["wall_s"] for p in ps)
        f = every.get(n)
        fg = f["frames_decoded"] / f["wall_s"] if f and f["wall_s"] > 0 else None
        cell = f"{fg:.1f}" if fg else "–"
        ratio = f"{fg / total:.2f}×" if fg else "–"
        print(f"| {n} | {total:.1f} | {total / n:.1f} | {cell} | {ratio} |")
PY
echo "raw reports: $out ($(tr '\n' ';' <"$out/load.txt"))" >&2
