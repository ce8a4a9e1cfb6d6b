# Shared by scripts/bench_cameras.sh and scripts/bench_soak.sh (sourced, not run).
# Expects: bin (the facegate binary), out (the output folder), device, threads.

# A positive integer, or exit with a clear message naming the variable.
need_count() { # NAME VALUE
  [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "error: $1 must be a positive integer, not '$2'" >&2; exit 2; }
}

# The first TCP port from $1 up that nothing on 127.0.0.1 listens on.
free_port() {
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

# The demo video (720p25, the six sample photos) and a gallery with Ann, made once in $out.
prepare_video_and_gallery() { # SECONDS
  local samples=models/prepared/samples log="$out/prepare.log"
  [[ -x $bin ]] || { echo "error: $bin not found: run cargo build --release first" >&2; exit 2; }
  [[ -f $samples/sample1.jpg ]] || { echo "error: $samples/sample1.jpg missing: run models/fetch first" >&2; exit 2; }
  if ! "$bin" make-video "$out/door.mp4" --seconds "$1" >"$log" 2>&1; then
    echo "error: make-video failed:" >&2; cat "$log" >&2; exit 1
  fi
  rm -f "$out/gallery.db"
  if ! "$bin" --device "$device" --gallery "$out/gallery.db" enroll --name Ann "$samples/sample1.jpg" \
      --largest >"$log" 2>&1; then
    echo "error: enroll failed (DEVICE=$device?):" >&2; cat "$log" >&2; exit 1
  fi
}

# The frames camera I of N waits before the first photo when staggered: (I-1)/N of the
# demo video's period of 70 frames (60 of a photo, 10 black).
lead_in_frames() { # I N
  echo $((($1 - 1) * 70 / $2))
}

# The video of camera I of N: the demo video, or when stagger=1 its copy that starts later.
camera_video() { # I N
  local lead=0
  [[ ${stagger:-0} == 1 ]] && lead=$(lead_in_frames "$1" "$2")
  if ((lead == 0)); then echo "$out/door.mp4"; else echo "$out/door-lead$lead.mp4"; fi
}

# Makes, once each, the later-starting copies of the demo video that N staggered cameras play.
make_staggered_videos() { # N SECONDS
  local i lead video log="$out/prepare.log"
  for ((i = 2; i <= $1; i++)); do
    lead=$(lead_in_frames "$i" "$1")
    video="$out/door-lead$lead.mp4"
    [[ -f $video ]] && continue
    if ! "$bin" make-video "$video" --seconds "$2" --lead-in-frames "$lead" >"$log" 2>&1; then
      echo "error: make-video --lead-in-frames $lead failed:" >&2; cat "$log" >&2; exit 1
    fi
  done
}

# Writes $out/NAME.toml: CAMERAS cameras on the demo video, named cam1…camN, in one daemon.
# PACING: live (realtime, the file paced like a camera) or replay (as fast as it goes);
# ENDING: eos (the daemon exits when every camera has played the file once) or loop.
write_config() { # NAME CAMERAS DETECT_FPS EMBED_EVERY PACING ENDING [LIVENESS_MODE]
  local name=$1 n=$2 realtime=false ending i liveness=${7:-report}
  [[ $5 == live ]] && realtime=true
  ending="exit_on_eos = true"
  [[ $6 == loop ]] && ending="loop = true"
  rm -f "$out/outbox-$name.db"
  {
    cat <<TOML
[inference]
intra_threads = $threads
precision = "${PRECISION:-fp32}"
[tracker]
embed_every = $4
[mqtt]
port = $(free_port 18830)
outbox_path = "$out/outbox-$name.db"
stats_interval_s = 0
hold_for_subscriber_s = 0
[gallery]
path = "$out/gallery.db"
[admin]
enabled = false
[liveness]
mode = "$liveness"
TOML
    for ((i = 1; i <= n; i++)); do
      cat <<TOML
[[cameras]]
name = "cam$i"
url = "file://$(camera_video "$i" "$n")"
detect_fps = $3
realtime = $realtime
$ending
TOML
    done
  } >"$out/$name.toml"
}

# One line of /proc/loadavg: the 1, 5 and 15 minute load averages.
load_average() { cut -d' ' -f1-3 /proc/loadavg; }
