#!/usr/bin/env bash
# `npm run bench:signal`: load test of ONE signal server (release build).
#
# Builds target/release/shoal-signal and the load generator
# (signal-server/examples/bench_signal.rs, tokio + tokio-tungstenite), then
# runs the generator inside a loopback-only network namespace. It starts the
# server on 127.0.0.1:0 and prints one JSON line on stdout:
#   {"peers": N, "msgs_per_s": X, "msgs_per_s_per_core": Y, "rss_mb_per_1k_peers": Z, ...}
# msgs_per_s: client->server messages with their expected effect (relays
# delivered to their target, heartbeats acked) per second over BENCH_SECONDS;
# per core: divided by the server's CPU (utime+stime) / wall time in that
# window. rss_mb_per_1k_peers: server VmRSS growth (MiB) with PEERS idle,
# joined peers, per 1000 peers. Progress goes to stderr.
#
# Settings (env): PEERS (5000) idle peers, SWARM_SIZE (100) per idle swarm,
# ACTIVE (200) clients for throughput, ACTIVE_SWARM_SIZE (20), PIPELINE (16)
# negotiations in flight per pair, HB_EVERY (8) relays per heartbeat,
# BENCH_SECONDS (10), WARMUP_SECONDS (2), LOADGEN_THREADS (1),
# SIGNAL_LOG (target/bench-signal-server.log), RUST_LOG for the server.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (rustup)"
{
  log "build: cargo build --release -p shoal-signal --bin shoal-signal --example bench_signal"
  cargo build --release -p shoal-signal --bin shoal-signal --example bench_signal
} >&2

# Every peer is one socket on each side; both processes inherit this limit.
PEERS="${PEERS:-5000}"
ACTIVE="${ACTIVE:-200}"
need=$(( PEERS + ACTIVE + 256 ))
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then
  ulimit -n 65536
else
  ulimit -n "$hard"
fi
[ "$(ulimit -n)" -ge "$need" ] || die "open-file limit $(ulimit -n) (hard $hard) is below the $need sockets PEERS=$PEERS ACTIVE=$ACTIVE need"
export PEERS ACTIVE

log "bench-signal: PEERS=$PEERS ACTIVE=$ACTIVE, fd limit $(ulimit -n)" >&2
exec timeout --kill-after=10 170 bash scripts/netns.sh \
  target/release/examples/bench_signal target/release/shoal-signal
