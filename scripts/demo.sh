#!/usr/bin/env bash
# The demo: detect every face in the six sample photos, then compare the largest face of
# each photo with that of every other one.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/facegate
samples=models/prepared/samples
for i in 1 2 3 4 5 6; do
  "$bin" detect "$samples/sample$i.jpg"
done
echo
echo "Largest face of each photo against each other one (cosine similarity; * = same person):"
printf '%10s' ""
for j in 1 2 3 4 5 6; do printf '%10s' "sample$j"; done
echo
for i in 1 2 3 4 5 6; do
  printf '%10s' "sample$i"
  for j in 1 2 3 4 5 6; do
    out=$("$bin" --json compare "$samples/sample$i.jpg" "$samples/sample$j.jpg" 2>/dev/null)
    sim=$(printf '%s' "$out" | sed -E 's/.*"similarity":([-0-9.eE]+).*/\1/')
    same=$(printf '%s' "$out" | grep -q '"same":true' && echo '*' || echo ' ')
    printf '%9.3f%s' "$sim" "$same"
  done
  echo
done
