#!/usr/bin/env bash
# Installs facegate on an edge box (run as root, from a checkout where `./dev setup` and
# `cargo build --release` have run):
#   deploy/install.sh [--prefix /usr] [--no-start] [--mqtt-port 1883] [--no-mosquitto]
#                     [--mqtt-only] [--root DIR]
# Binary → $PREFIX/bin, models + ONNX Runtime → $PREFIX/lib/facegate/models,
# configuration → /etc/facegate/facegate.toml (kept if present), unit → /etc/systemd/system.
#
# The broker: Debian's mosquitto (installed when missing) listening on 127.0.0.1 only, with
# persistence, no anonymous access, and two users (docs/mqtt.md):
#   facegate        the daemon: publishes facegate/#, subscribes facegate/cmd/#
#   facegate-watch  read-only: subscribes facegate/# (`facegate watch`, integrations)
# Their passwords are made once and kept: /etc/facegate/mqtt.env (the daemon's broker
# settings, loaded by a systemd drop-in) and /etc/facegate/watch.toml (for
# `facegate --config /etc/facegate/watch.toml watch`), both readable by root only.
# --no-mosquitto leaves the broker alone (the daemon then uses what its configuration says).
# --mqtt-only does the broker part only. --root DIR writes everything under DIR instead of /,
# paths inside the files included, and installs, starts and chowns nothing: to try the
# set-up out, or test it, without root.
#
# Safe to run again: secrets are kept, files are rewritten only when their content changes,
# and mosquitto is restarted only then.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr
start=yes
mqtt_port=1883
mosquitto=yes
facegate=yes
root=""
usage="usage: deploy/install.sh [--prefix DIR] [--no-start] [--mqtt-port N] [--no-mosquitto] [--mqtt-only] [--root DIR]"
while (($#)); do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --no-start) start=no; shift ;;
    --mqtt-port) mqtt_port="$2"; shift 2 ;;
    --no-mosquitto) mosquitto=no; shift ;;
    --mqtt-only) facegate=no; shift ;;
    --root) root="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
[[ "$mqtt_port" =~ ^[0-9]+$ ]] && ((mqtt_port > 0 && mqtt_port < 65536)) ||
  { echo "error: --mqtt-port: $mqtt_port is not a port" >&2; exit 2; }
[ -n "$root" ] || [ "$(id -u)" -eq 0 ] || { echo "error: run as root (or try it out with --root DIR)" >&2; exit 1; }

etc_facegate="$root/etc/facegate"
etc_mosquitto="$root/etc/mosquitto"
mqtt_env="$etc_facegate/mqtt.env"
watch_toml="$etc_facegate/watch.toml"
changed_broker=no
changed_daemon=no

say() { echo "install: $*"; }

# put FILE MODE: stdin becomes FILE, written only when its content differs (so that a second
# run changes nothing); sets `changed` to yes or no.
put() {
  local file="$1" mode="$2" tmp
  mkdir -p "$(dirname "$file")"
  tmp="$(mktemp "$file.XXXXXX")"
  cat >"$tmp"
  chmod "$mode" "$tmp"
  if [ -f "$file" ] && cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
    chmod "$mode" "$file"
    changed=no
  else
    mv -f "$tmp" "$file"
    changed=yes
  fi
}

# A new password: 48 hex digits (safe in TOML, environment files and mosquitto_passwd).
new_password() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

# stored_password FILE SED: the password FILE holds (SED extracts it), empty when none.
stored_password() {
  [ -f "$1" ] || return 0
  sed -n "$2" "$1" | head -n 1
}

# set_password USER PASSWORD KNOWN: adds or updates USER in mosquitto's password file unless
# KNOWN (the password was stored before) and the user is there already; other users stay.
set_password() {
  local passwd="$etc_mosquitto/facegate.passwd"
  if [ -n "$3" ] && grep -qs "^$1:" "$passwd"; then return 0; fi
  [ -f "$passwd" ] || install -m 0600 /dev/null "$passwd"
  mosquitto_passwd -b "$passwd" "$1" "$2" >/dev/null
  changed_broker=yes
}

install_facegate() {
  [ -x target/release/facegate ] || { echo "error: build first: cargo build --release" >&2; exit 1; }
  [ -f models/prepared/libonnxruntime.so ] || { echo "error: fetch models first: models/fetch" >&2; exit 1; }
  local bin="$root$prefix/bin" lib="$root$prefix/lib/facegate"
  install -D -m 0755 target/release/facegate "$bin/facegate"
  install -d "$lib/models"
  for f in models/prepared/*.onnx models/prepared/*.json models/prepared/*.bin models/prepared/libonnxruntime.so; do
    [ -e "$f" ] && install -m 0644 "$f" "$lib/models/"
  done
  if [ -d models/prepared/cuda ]; then
    install -d "$lib/models/cuda"
    install -m 0644 models/prepared/cuda/* "$lib/models/cuda/"
  fi
  if [ -d models/prepared/openvino ]; then
    install -d "$lib/models/openvino"
    install -m 0644 models/prepared/openvino/* "$lib/models/openvino/"
  fi
  install -d "$etc_facegate"
  [ -f "$etc_facegate/facegate.toml" ] || install -m 0644 config/facegate.toml "$etc_facegate/facegate.toml"
  mkdir -p "$root/etc/systemd/system"
  sed "s#/usr/bin/facegate#$prefix/bin/facegate#g; s#/usr/lib/facegate#$prefix/lib/facegate#g" \
    systemd/facegate.service >"$root/etc/systemd/system/facegate.service"
  install -D -m 0644 README.md "$root$prefix/share/doc/facegate/README.md"
}

# Debian's mosquitto, and nothing in its configuration that ours would clash with.
check_mosquitto() {
  if [ -z "$root" ] && ! command -v mosquitto >/dev/null 2>&1; then
    say "installing Debian's mosquitto"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto
  fi
  command -v mosquitto_passwd >/dev/null 2>&1 ||
    { echo "error: mosquitto_passwd not found (Debian: apt-get install mosquitto)" >&2; exit 1; }
  # mosquitto takes one password file and one ACL file: someone else's would clash.
  local others
  others="$(grep -lsE '^[[:space:]]*(password_file|acl_file)[[:space:]]' \
    "$etc_mosquitto/mosquitto.conf" "$etc_mosquitto"/conf.d/*.conf | grep -v '/facegate\.conf$' || true)"
  if [ -n "$others" ]; then
    echo "error: mosquitto already has a password_file or acl_file ($others): add facegate's users" \
      "and ACL to them by hand (docs/mqtt.md) and run again with --no-mosquitto" >&2
    exit 1
  fi
}

write_mosquitto_conf() {
  put "$etc_mosquitto/conf.d/facegate.conf" 0644 <<EOF
# facegate's broker: written by deploy/install.sh (run it again rather than editing this).
# Loopback only: the daemon and its local subscribers run on this machine.
listener $mqtt_port 127.0.0.1
# Everyone logs in, and may only what facegate.acl allows.
allow_anonymous false
password_file $etc_mosquitto/facegate.passwd
acl_file $etc_mosquitto/facegate.acl
# Sessions and the messages queued for subscribers away (clean session off, QoS 1) outlive a
# restart; saved every minute too, so a crash loses at most that. Debian's mosquitto.conf
# says where (persistence_location).
persistence true
autosave_interval 60
# Per subscriber away: enough for a long outage at a busy door.
max_queued_messages 10000
EOF
  [ "$changed" = no ] || changed_broker=yes
  local acl="$etc_mosquitto/facegate.acl" marker="# ---- Your additions below this line" yours=""
  [ -f "$acl" ] && yours="$(sed -n "/^$marker/,\$p" "$acl" | tail -n +2)"
  put "$acl" 0600 <<EOF
# facegate: written by deploy/install.sh. The topics are mqtt.prefix = "facegate".
# The daemon: events, states, its will and command results; it reads commands.
user facegate
topic write facegate/#
topic read facegate/cmd/#

# Read-only: facegate watch and integrations.
user facegate-watch
topic read facegate/#

$marker (kept by deploy/install.sh; e.g. a user that sends commands) ----
$yours
EOF
  [ "$changed" = no ] || changed_broker=yes
}

# The passwords, made once and kept.
write_accounts() {
  local daemon_known watch_known daemon_pw watch_pw
  daemon_known="$(stored_password "$mqtt_env" 's/^FACEGATE__MQTT__PASSWORD=//p')"
  watch_known="$(stored_password "$watch_toml" 's/^password = "\(.*\)"$/\1/p')"
  daemon_pw="${daemon_known:-$(new_password)}"
  watch_pw="${watch_known:-$(new_password)}"
  put "$mqtt_env" 0600 <<EOF
# facegate's broker, for the daemon (a systemd drop-in loads this file): written by
# deploy/install.sh, which keeps the password when it runs again.
FACEGATE__MQTT__HOST=127.0.0.1
FACEGATE__MQTT__PORT=$mqtt_port
FACEGATE__MQTT__USERNAME=facegate
FACEGATE__MQTT__PASSWORD=$daemon_pw
EOF
  [ "$changed" = no ] || changed_daemon=yes
  put "$watch_toml" 0600 <<EOF
# The broker for read-only subscribers: sudo facegate --config /etc/facegate/watch.toml watch
# Written by deploy/install.sh, which keeps the password when it runs again.
[mqtt]
host = "127.0.0.1"
port = $mqtt_port
username = "facegate-watch"
password = "$watch_pw"
EOF
  set_password facegate "$daemon_pw" "$daemon_known"
  set_password facegate-watch "$watch_pw" "$watch_known"
}

# Ownership, the service, and the daemon pointed at the broker.
activate_mosquitto() {
  [ -z "$root" ] || return 0
  # mosquitto rereads these as its own user on SIGHUP, and warns about other owners.
  chown mosquitto:mosquitto "$etc_mosquitto/facegate.passwd" "$etc_mosquitto/facegate.acl"
  put /etc/systemd/system/facegate.service.d/mosquitto.conf 0644 <<EOF
# Written by deploy/install.sh: the daemon uses the local mosquitto (see /etc/facegate/mqtt.env).
[Unit]
Wants=mosquitto.service
After=mosquitto.service

[Service]
EnvironmentFile=/etc/facegate/mqtt.env
EOF
  [ "$changed" = no ] || changed_daemon=yes
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --quiet mosquitto
    if [ "$changed_broker" = yes ]; then systemctl restart mosquitto; else systemctl start mosquitto; fi
    # A running daemon reads its broker settings at start only.
    if [ "$changed_daemon" = yes ] && systemctl is-active --quiet facegate; then systemctl restart facegate; fi
  else
    say "no systemd here: (re)start mosquitto yourself"
  fi
}

setup_mosquitto() {
  check_mosquitto
  write_mosquitto_conf
  write_accounts
  activate_mosquitto
  say "mosquitto on 127.0.0.1:$mqtt_port (users facegate, facegate-watch; $watch_toml for watch)"
}

[ "$facegate" = no ] || install_facegate
[ "$mosquitto" = no ] || setup_mosquitto
[ "$facegate" = yes ] || exit 0
[ -z "$root" ] || { say "installed under $root"; exit 0; }

# The configuration as the service will see it (with the broker's settings, when set up here).
(
  [ ! -f "$mqtt_env" ] || [ "$mosquitto" = no ] || { set -a; . "$mqtt_env"; set +a; }
  "$prefix/bin/facegate" validate-config --config /etc/facegate/facegate.toml
)
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if [ "$start" = yes ]; then systemctl enable --now facegate; fi
  echo "installed; logs: journalctl -u facegate -f"
else
  echo "installed (no systemd here: start with $prefix/bin/facegate run --config /etc/facegate/facegate.toml)"
fi
