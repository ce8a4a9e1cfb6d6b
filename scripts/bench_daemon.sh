#!/usr/bin/env bash
# The daemon on a 720p replay of the sample photos, side by side with the OpenCV peer
# (same fp32 YuNet + SFace, every frame, tests/reference/peer_video.py) in the same run:
#   every frame   facegate with detect_fps = 0 and tracker.embed_every = 1: every frame
#                 detected and every face embedded, like the peer;
#   default       facegate as shipped: detection sampled at 10 fps by timestamp, faces
#                 embedded when a track starts, improves, or every 10 detection frames;
#   live pace     the default mode with realtime = true (the file paced like a camera),
#                 where frame-to-publish latency has no replay queue in it;
#   liveness      the default mode with liveness.mode = report and = enforce: the cost of
#                 the liveness stage per detected frame and per track.
#   bf16          every frame and default again with inference.precision = bf16 (OpenVINO
#                 on a CPU with AVX-512 BF16 or AMX; elsewhere the same as fp32, and the
#                 log says so).
# Replays use realtime = false (every frame decoded, as fast as it goes). Threads: 2.
# DEVICE=cpu|openvino|auto (default auto) picks the execution provider.
# Prints a Markdown table; raw reports go to $OUT (default: a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FACEGATE_BIN:-target/release/facegate}
seconds=${SECONDS_OF_VIDEO:-16}
samples=models/prepared/samples
py="${FACEGATE_CACHE:-$HOME/.cache/facegate}/venv-ref/bin/python"
tests/reference/run --out "$(mktemp)" "$samples/sample1.jpg" >/dev/null 2>&1
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/facegate-bench-daemon.XXXXXX")}
mkdir -p "$out"

free_port() {
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

"$bin" make-video "$out/door.mp4" --seconds "$seconds" >/dev/null
rm -f "$out/gallery.db"
"$bin" --gallery "$out/gallery.db" enroll --name Ann "$samples/sample1.jpg" --largest >/dev/null

run_facegate() { # name detect_fps embed_every realtime [liveness mode]
  local name=$1 port admin
  port=$(free_port 18830)
  admin=$(free_port 19464)
  rm -f "$out/outbox-$name.db"
  cat >"$out/$name.toml" <<TOML
[inference]
intra_threads = 2
precision = "${PRECISION:-fp32}"
[tracker]
embed_every = $3
[mqtt]
port = $port
outbox_path = "$out/outbox-$name.db"
stats_interval_s = 0
[gallery]
path = "$out/gallery.db"
[admin]
listen = "127.0.0.1:$admin"
[liveness]
mode = "${5:-off}"
[[cameras]]
name = "door"
url = "file://$out/door.mp4"
detect_fps = $2
realtime = $4
exit_on_eos = true
TOML
  "$bin" --device "${DEVICE:-auto}" --config "$out/$name.toml" run --report "$out/$name.json" 2>"$out/$name.log"
}

run_facegate every 0 1 false
run_facegate default 10 10 false
run_facegate live 10 10 true
run_facegate report 10 10 false report
run_facegate enforce 10 10 false enforce
PRECISION=bf16 run_facegate every-bf16 0 1 false
PRECISION=bf16 run_facegate default-bf16 10 10 false
(cd tests/reference && "$py" peer_video.py --models ../../models/prepared --threads 2 \
  --enroll "../../$samples/sample1.jpg" "$out/door.mp4" 2>/dev/null) >"$out/peer.json"

"$py" - "$out" <<'PY'
import json, sys, os
d = sys.argv[1]
r = {n: json.load(open(os.path.join(d, n + ".json"))) for n in ("every", "default", "live", "report", "enforce", "every-bf16", "default-bf16", "peer")}
peer = r["peer"]
video = peer["frames"]  # the peer decodes every frame of the video
print("| pipeline | video frames/s | vs peer | frames detected | faces | embeddings | events | processing p50 / p99 ms | frame→publish p50 / p99 ms |")
print("|---|---|---|---|---|---|---|---|---|")
for name, label in (("every", "facegate, every frame"), ("default", "facegate, default"), ("live", "facegate, default, paced like a camera"),
                    ("every-bf16", "facegate, every frame, bf16"), ("default-bf16", "facegate, default, bf16")):
    x = r[name]
    fps = video / x["wall_s"] if x["wall_s"] > 0 else 0.0
    rate = "real time" if name == "live" else f"{fps:.1f}"
    ratio = "–" if name == "live" else f"{fps / peer['fps']:.2f}×"
    print(f"| {label} | {rate} | {ratio} | {x['frames']} | {x['faces']} | {x['embeddings']} | {x['events']} "
          f"| {x['processing_p50_ms']:.1f} / {x['processing_p99_ms']:.1f} | {x['frame_to_publish_p50_ms']:.0f} / {x['frame_to_publish_p99_ms']:.0f} |")
print(f"| OpenCV 5.0 peer, every frame | {peer['fps']:.1f} | 1.00× | {peer['frames']} | {peer['faces']} | {peer['faces']} | – "
      f"| {peer['latency_p50_ms']:.1f} / {peer['latency_p99_ms']:.1f} | – |")
print()
print("| default mode, liveness | video frames/s | vs peer | events | liveness ms / detected frame | liveness ms / track | tracks | processing p50 / p99 ms |")
print("|---|---|---|---|---|---|---|---|")
for name in ("default", "report", "enforce"):
    x = r[name]
    fps = video / x["wall_s"] if x["wall_s"] > 0 else 0.0
    mode = "off" if name == "default" else name
    print(f"| {mode} | {fps:.1f} | {fps / peer['fps']:.2f}× | {x['events']} | {x['liveness_ms_per_frame']:.2f} "
          f"| {x['liveness_ms_per_track']:.1f} | {x['liveness_tracks']} | {x['processing_p50_ms']:.1f} / {x['processing_p99_ms']:.1f} |")
PY
echo "raw reports: $out" >&2
