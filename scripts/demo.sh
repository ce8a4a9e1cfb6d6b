#!/usr/bin/env bash
# The demo:
#  1. detect every face in the six sample photos, then compare the largest face of each
#     photo with that of every other one;
#  2. the daemon: make a short video from the sample photos (faces moving and changing
#     size), enroll one person (Ann, the largest face of sample1) from that one photo, run
#     `facegate run` with its in-process MQTT broker on the video while `facegate watch`
#     prints the identity events, and stop at the end of the video.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FACEGATE_BIN:-target/release/facegate}
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

# ---- the daemon on a video ---------------------------------------------------------------

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

# The first free TCP port on 127.0.0.1 from $1 on (the defaults may be taken, e.g. by a
# Mosquitto service on 1883).
free_port() {
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/facegate-demo.XXXXXX")
watch_pid=""
cleanup() {
  if [ -n "$watch_pid" ]; then kill "$watch_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

say "Making a 12-second video from the sample photos"
"$bin" make-video "$work/door.mp4" --seconds 12

mqtt_port=$(free_port 1883)
admin_port=$(free_port 9464)
cat >"$work/facegate.toml" <<EOF
# No [mqtt] host: the daemon starts its in-process broker on 127.0.0.1:$mqtt_port.
[mqtt]
port = $mqtt_port
outbox_path = "$work/outbox.db"
[gallery]
path = "$work/gallery.db"
[admin]
listen = "127.0.0.1:$admin_port"
[[cameras]]
name = "door"
url = "file://$work/door.mp4"
realtime = false     # every frame, as fast as it goes: the same events every time
exit_on_eos = true   # stop at the end of the video
EOF

say "Enrolling Ann from one photo (the largest face of sample1)"
"$bin" --config "$work/facegate.toml" enroll --name Ann "$samples/sample1.jpg" --largest

say "Running the daemon on the video; facegate watch prints what it publishes"
# watch starts first and waits for the daemon's broker, so that it sees every event.
"$bin" --config "$work/facegate.toml" watch --wait 120 --until-offline > >(tee "$work/watch.log") &
watch_pid=$!
status=0
"$bin" --config "$work/facegate.toml" run 2>"$work/daemon.log" || status=$?
if [ "$status" -ne 0 ]; then
  echo "error: facegate run failed (exit $status); its log:" >&2
  tail -n 40 "$work/daemon.log" >&2
  exit 1
fi
# watch returns when the daemon says offline; bounded in case it never connected.
for _ in $(seq 100); do
  kill -0 "$watch_pid" 2>/dev/null || break
  sleep 0.1
done
kill "$watch_pid" 2>/dev/null || true
wait "$watch_pid" 2>/dev/null || true
watch_pid=""
sleep 0.2 # let tee finish writing

recognized=$(grep -c '  recognized  Ann  ' "$work/watch.log" || true)
unknown=$(grep -c '  unknown  ' "$work/watch.log" || true)
others=$(grep '  recognized  ' "$work/watch.log" | grep -vc '  recognized  Ann  ' || true)
say "Ann recognized on $recognized track(s); $unknown unknown track(s); $others other recognition(s)"
if [ "$recognized" -lt 1 ] || [ "$unknown" -lt 1 ] || [ "$others" -ne 0 ]; then
  echo "error: expected Ann recognized and everyone else unknown; daemon log:" >&2
  tail -n 40 "$work/daemon.log" >&2
  exit 1
fi
