#!/usr/bin/env bash
# `npm start`: the demo on this machine. Installs what is missing, makes the
# sample video, builds the servers (dev profile, shared with the tests) and
# the browser bundle, then runs shoal-signal and shoal-seed (the sample
# video and a live test channel) on 127.0.0.1 until Ctrl-C. PORT (default
# 8080) sets the signal server's port, SEED_PORT (default PORT+1) the seed's.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

PORT="${PORT:-8080}"
SEED_PORT="${SEED_PORT:-$((PORT + 1))}"

bash scripts/setup.sh
bash scripts/make-sample.sh
log "build: cargo build -p shoal-signal -p shoal-seed"
cargo build -p shoal-signal -p shoal-seed
bash scripts/build-wasm.sh

bin="${CARGO_TARGET_DIR:-target}/debug"
logs=.shoal/logs
mkdir -p "$logs" .shoal/cache
# The seed proves itself to the signal server with a token signed by this
# key (the seed signs its own, since both run here). Made once, kept private.
if [ -z "${SHOAL_SEED_KEY:-}" ]; then
  if [ ! -s .shoal/seed.key ]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > .shoal/seed.key)
  fi
  SHOAL_SEED_KEY=$(cat .shoal/seed.key)
  export SHOAL_SEED_KEY
fi
pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits for "<MARKER> <url>" in a server's stdout log; prints the url.
wait_listening() {
  local name=$1 pid=$2 log=$3 marker=$4 secs=$5 line
  for ((i = 0; i < secs * 10; i++)); do
    line=$(grep -m1 "^$marker " "$log" 2>/dev/null || true)
    if [ -n "$line" ]; then echo "${line#"$marker "}"; return 0; fi
    kill -0 "$pid" 2>/dev/null || die "$name exited before it was ready (see $log)"
    sleep 0.1
  done
  die "$name not ready after $secs s (see $log)"
}

: >"$logs/signal.out"
"$bin/shoal-signal" --listen "127.0.0.1:$PORT" --web-dir web-demo --pkg-dir web-demo/pkg \
  > >(tee "$logs/signal.out") &
pids+=($!)
signal_url=$(wait_listening shoal-signal "${pids[0]}" "$logs/signal.out" SHOAL_SIGNAL_LISTENING 60)
log "signal server: $signal_url"

: >"$logs/seed.out"
# Next to the VOD library, one live channel: ffmpeg's test picture with the
# wall clock burned in (/live/live/live.json).
"$bin/shoal-seed" --media .shoal/media --cache .shoal/cache --listen "127.0.0.1:$SEED_PORT" \
  --signal "ws://127.0.0.1:$PORT/ws" --live live=testsrc:clock > >(tee "$logs/seed.out") &
pids+=($!)
seed_url=$(wait_listening shoal-seed "${pids[1]}" "$logs/seed.out" SHOAL_SEED_LISTENING 600)
log "seed: $seed_url"

echo
echo "Shoal demo: ${signal_url%/}/?seed=${seed_url%/}"
echo "(Ctrl-C to stop)"
echo

# Run until Ctrl-C or until either server exits.
set +e
wait -n "${pids[@]}"
rc=$?
log "a server exited (status $rc); stopping"
exit "$rc"
