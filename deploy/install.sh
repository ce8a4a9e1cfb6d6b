#!/usr/bin/env bash
# Installs facegate on an edge box (run as root, from a checkout where `./dev setup` and
# `cargo build --release` have run):
#   deploy/install.sh [--prefix /usr] [--no-start]
# Binary → $PREFIX/bin, models + ONNX Runtime → $PREFIX/lib/facegate/models,
# configuration → /etc/facegate/facegate.toml (kept if present), unit → /etc/systemd/system.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=/usr
start=yes
while (($#)); do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --no-start) start=no; shift ;;
    *) echo "usage: deploy/install.sh [--prefix DIR] [--no-start]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "error: run as root" >&2; exit 1; }
[ -x target/release/facegate ] || { echo "error: build first: cargo build --release" >&2; exit 1; }
[ -f models/prepared/libonnxruntime.so ] || { echo "error: fetch models first: models/fetch" >&2; exit 1; }

install -D -m 0755 target/release/facegate "$prefix/bin/facegate"
install -d "$prefix/lib/facegate/models"
for f in models/prepared/*.onnx models/prepared/*.json models/prepared/*.bin models/prepared/libonnxruntime.so; do
  [ -e "$f" ] && install -m 0644 "$f" "$prefix/lib/facegate/models/"
done
if [ -d models/prepared/cuda ]; then
  install -d "$prefix/lib/facegate/models/cuda"
  install -m 0644 models/prepared/cuda/* "$prefix/lib/facegate/models/cuda/"
fi
install -d /etc/facegate
[ -f /etc/facegate/facegate.toml ] || install -m 0644 config/facegate.toml /etc/facegate/facegate.toml
sed "s#/usr/bin/facegate#$prefix/bin/facegate#g; s#/usr/lib/facegate#$prefix/lib/facegate#g" \
  systemd/facegate.service > /etc/systemd/system/facegate.service
install -D -m 0644 README.md "$prefix/share/doc/facegate/README.md"
"$prefix/bin/facegate" validate-config --config /etc/facegate/facegate.toml
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if [ "$start" = yes ]; then systemctl enable --now facegate; fi
  echo "installed; logs: journalctl -u facegate -f"
else
  echo "installed (no systemd here: start with $prefix/bin/facegate run --config /etc/facegate/facegate.toml)"
fi
