#!/usr/bin/env bash
# `npm run bench:seed-load`: how many viewers ONE seed (release build) serves
# over WebRTC, at ~1 Mbit/s each.
#
# Sets up what is missing (scripts/setup.sh, as `npm start` does), encodes
# the benchmark video if missing (.shoal/media-seed-load/bench.mp4: 120 s of
# 854x480 testsrc2 + a tone, which the seed's packaging, libx264 veryfast at
# its default CRF, turns into about 1 Mbit/s of H.264 + AAC; packaged into
# .shoal/cache-seed-load), builds the release
# shoal-signal and shoal-seed and the load generator
# (seed-server/examples/bench_seed_load.rs), then runs the generator inside a
# loopback-only network namespace. For N = 50, 100 and 200 it starts a fresh
# signal server and seed and connects N webrtc-rs viewers running the real
# viewer engine, each pulling the video at playback rate from the seed only
# (no P2P between them). One JSON line per N on stdout:
#   {"viewers": N, "kept_up": K, "cpu_s_per_viewer_min": X, "rss_mb_per_viewer": Y, ...}
# and a final {"viewers_per_core": V, ...}: the largest N whose viewers all
# kept up, divided by the seed's cores in use at that N. Field meanings are
# in the example's header. Progress goes to stderr; the seed's and the
# signal server's logs to target/bench-seed-load-{seed,signal}.log.
#
# Settings (env): NS ("50,100,200"), WATCH_S (50) per viewer, RAMP_S (15)
# over which the viewers join, SETTLE_S (5), LOADGEN_THREADS (2),
# SEED_RUST_LOG. About 4 minutes with the defaults, once built.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (rustup)"
{
  bash scripts/setup.sh

  media=.shoal/media-seed-load
  out=$media/bench.mp4
  if [ -s "$out" ]; then
    log "sample: $out present"
  else
    mkdir -p "$media"
    tmp="$out.tmp.$$.mp4"
    trap 'rm -f "$tmp"' EXIT
    log "sample: encoding $out (120 s, 854x480, H.264 + AAC)"
    ffmpeg -nostdin -hide_banner -loglevel error -y \
      -f lavfi -i "testsrc2=size=854x480:rate=25:duration=120" \
      -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=120" \
      -map 0:v -map 1:a \
      -c:v libx264 -preset veryfast -crf 18 -profile:v high -pix_fmt yuv420p \
      -x264-params "keyint=50:min-keyint=50:scenecut=0" \
      -c:a aac -b:a 128k -ac 2 \
      -movflags +faststart -shortest "$tmp"
    mv "$tmp" "$out"
    trap - EXIT
    log "sample: wrote $out ($(wc -c <"$out") bytes)"
  fi

  # The servers as shipped, then the generator (a separate build, so that
  # the generator's dev-dependencies do not change the measured binary).
  log "build: cargo build --release -p shoal-signal -p shoal-seed"
  cargo build --release -p shoal-signal -p shoal-seed
  log "build: cargo build --release -p shoal-seed --example bench_seed_load"
  cargo build --release -p shoal-seed --example bench_seed_load
} >&2

# Each viewer holds a UDP socket, a WebSocket and HTTP connections; the seed
# a UDP socket per viewer.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then
  ulimit -n 65536
else
  ulimit -n "$hard"
fi
[ "$(ulimit -n)" -ge 4096 ] || die "open-file limit $(ulimit -n) (hard $hard) is below 4096"

log "bench-seed-load: NS=${NS:-50,100,200} WATCH_S=${WATCH_S:-50} RAMP_S=${RAMP_S:-15}, fd limit $(ulimit -n)" >&2
exec timeout --kill-after=10 1200 bash scripts/netns.sh \
  target/release/examples/bench_seed_load target/release/shoal-signal target/release/shoal-seed
