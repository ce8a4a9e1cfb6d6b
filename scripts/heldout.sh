#!/usr/bin/env bash
# Agreement with the OpenCV peer on photos no test uses (models/fetch --heldout):
# detection recall at IoU >= 0.5 and embedding cosine of matched faces.
# Refinement of large faces is turned off first (the peer has none), then left on to show
# what it changes.
set -euo pipefail
cd "$(dirname "$0")/.."
models/fetch --heldout
cargo build --release --locked -q
out=$(mktemp -d)
tests/reference/run --out "$out/reference.json" models/prepared/heldout/* 2>/dev/null
for mode in off on; do
  echo "== refinement $mode"
  env_refine=()
  [ "$mode" = off ] && env_refine=(env FACEGATE__DETECTOR__REFINE_ABOVE_PX=0)
  files=()
  for img in models/prepared/heldout/*; do
    f="$out/$(basename "$img").$mode.json"
    "${env_refine[@]}" target/release/facegate --device cpu --json embed "$img" > "$f"
    files+=("$f")
  done
  "${FACEGATE_CACHE:-$HOME/.cache/facegate}/venv-ref/bin/python" tests/reference/agreement.py "$out/reference.json" "${files[@]}" || true
done
