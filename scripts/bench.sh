#!/usr/bin/env bash
# Detector ms/frame and embedder ms/face (batch 1 and 8) on CPU: facegate (ONNX Runtime)
# and the OpenCV peer on the same prepared models and the six sample photos, side by side,
# at 1 and 2 threads. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
iterations="${ITERATIONS:-20}"
images=(models/prepared/samples/sample{1..6}.jpg)
py="${FACEGATE_CACHE:-$HOME/.cache/facegate}/venv-ref/bin/python"
# Make sure the peer's environment exists (the reference runner builds it).
tests/reference/run --out "$(mktemp)" "${images[0]}" 2>/dev/null
row() { # name json
  "$py" - "$1" "$2" <<'PY'
import json, sys
r = json.loads(sys.argv[2])
f = lambda k: f"{r[k]['mean_ms']:.2f} (p50 {r[k]['p50_ms']:.2f})"
print(f"| {sys.argv[1]} | {r['intra_threads']} | {f('detect_ms_per_frame')} | {f('embed_ms_per_face_batch1')} | {f('embed_ms_per_face_batch_n')} |")
PY
}
echo "| implementation | threads | detector ms/frame | embedder ms/face, batch 1 | embedder ms/face, batch 8 |"
echo "|---|---|---|---|---|"
for t in 1 2; do
  ours=$(FACEGATE__INFERENCE__INTRA_THREADS=$t target/release/facegate --device cpu --json bench --iterations "$iterations" "${images[@]}")
  peer=$(cd tests/reference && "$py" bench_peer.py --models ../../models/prepared --threads "$t" --iterations "$iterations" "${images[@]/#/../../}" 2>/dev/null)
  row "facegate (ONNX Runtime 1.32)" "$ours"
  row "OpenCV 5.0 peer" "$peer"
done
