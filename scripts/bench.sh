#!/usr/bin/env bash
# Detector ms/frame (whole call, and the model alone) and embedder ms/face (batch 1 and 8):
# facegate (ONNX Runtime) on each device asked for, and the OpenCV peer on the same
# prepared models and the six sample photos, side by side, at 1 and 2 threads. Prints a
# Markdown table. After a release build:
#   scripts/bench.sh [--device cpu,openvino,openvino:bf16] [--no-peer]
# --device: comma-separated devices for facegate (cpu, openvino, cuda; default cpu), each
# with an optional :precision (inference.precision, fp32 unless given);
# --no-peer: facegate only. ITERATIONS (default 20) sets the timed repetitions.
set -euo pipefail
cd "$(dirname "$0")/.."
devices=cpu
peer=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --device) devices="${2:?--device needs a list such as cpu,openvino}"; shift 2 ;;
    --device=*) devices="${1#--device=}"; shift ;;
    --no-peer) peer=no; shift ;;
    *) echo "usage: scripts/bench.sh [--device cpu,openvino] [--no-peer]" >&2; exit 2 ;;
  esac
done
IFS=, read -r -a device_list <<<"$devices"
iterations="${ITERATIONS:-20}"
images=(models/prepared/samples/sample{1..6}.jpg)
py="${FACEGATE_CACHE:-$HOME/.cache/facegate}/venv-ref/bin/python"
if [ "$peer" = yes ]; then
  # Make sure the peer's environment exists (the reference runner builds it).
  tests/reference/run --out "$(mktemp)" "${images[0]}" 2>/dev/null
else
  py=python3
fi
label() { # device[:precision]
  case "$1" in
    cpu) echo "facegate (ONNX Runtime 1.32, CPU provider)" ;;
    openvino) echo "facegate (ONNX Runtime 1.24.1, OpenVINO provider)" ;;
    openvino:*) echo "facegate (ONNX Runtime 1.24.1, OpenVINO provider, ${1#openvino:})" ;;
    *) echo "facegate ($1)" ;;
  esac
}
row() { # name json
  "$py" - "$1" "$2" <<'PY'
import json, sys
r = json.loads(sys.argv[2])
f = lambda k: f"{r[k]['mean_ms']:.2f} (p50 {r[k]['p50_ms']:.2f})" if k in r else "–"
print(f"| {sys.argv[1]} | {r['intra_threads']} | {f('detect_ms_per_frame')} | {f('detect_model_ms_per_frame')} | {f('embed_ms_per_face_batch1')} | {f('embed_ms_per_face_batch_n')} |")
PY
}
echo "| implementation | threads | detector ms/frame | detector model alone ms/frame | embedder ms/face, batch 1 | embedder ms/face, batch 8 |"
echo "|---|---|---|---|---|---|"
for t in 1 2; do
  for d in "${device_list[@]}"; do
    precision=fp32
    [[ "$d" == *:* ]] && precision=${d#*:}
    ours=$(FACEGATE__INFERENCE__INTRA_THREADS=$t FACEGATE__INFERENCE__PRECISION=$precision \
      target/release/facegate --device "${d%%:*}" --json bench --iterations "$iterations" "${images[@]}")
    row "$(label "$d")" "$ours"
  done
  if [ "$peer" = yes ]; then
    peer_json=$(cd tests/reference && "$py" bench_peer.py --models ../../models/prepared --threads "$t" --iterations "$iterations" "${images[@]/#/../../}" 2>/dev/null)
    row "OpenCV 5.0 peer" "$peer_json"
  fi
done
