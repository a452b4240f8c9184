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
# peers_connected: idle peers that completed hello + join (the run fails,
# after printing the line, if any is missing); rss_mb_total: the server's
# VmRSS with all of them; loadgen_rss_mb: the load generator's.
#
# Settings (env): PEERS (5000) idle peers, up to 200000: `PEERS=100000 npm
# run bench:signal` measures the issue's 100,000 idle peers where the
# open-file limit allows (one socket per peer in each process; the script
# raises the limit as root, and says so when it cannot), SWARM_SIZE (100)
# per idle swarm, SOURCE_ADDRS (as needed) loopback source addresses,
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
# 100,000 peers need more than the usual hard limit: root raises it (up to
# fs.nr_open), anyone else gets told how.
PEERS="${PEERS:-5000}"
ACTIVE="${ACTIVE:-200}"
need=$(( PEERS + ACTIVE + 256 ))
want=$(( need > 65536 ? need : 65536 ))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
  if ! ulimit -Hn "$want" 2>/dev/null && [ "$hard" -lt "$need" ]; then
    die "open-file hard limit $hard is below the $need sockets PEERS=$PEERS ACTIVE=$ACTIVE need (the server holds one per peer), and it cannot be raised here: that needs root with CAP_SYS_RESOURCE (a container may drop it) and fs.nr_open ($(cat /proc/sys/fs/nr_open 2>/dev/null)) above it. Raise 'nofile' where the shell starts (limits.conf, systemd LimitNOFILE, docker --ulimit nofile=$need:$need), or run PEERS=$(( hard - ACTIVE - 256 )) at most"
  fi
  hard=$(ulimit -Hn)
fi
if [ "$hard" = unlimited ] || [ "$hard" -ge "$want" ]; then
  ulimit -n "$want"
else
  ulimit -n "$hard"
fi
[ "$(ulimit -n)" -ge "$need" ] || die "open-file limit $(ulimit -n) (hard $hard) is below the $need sockets PEERS=$PEERS ACTIVE=$ACTIVE need"
export PEERS ACTIVE

# Whole run: ~1 minute for 5000 peers; joining and leaving grow with PEERS
# (about 2 minutes for 100,000 on 2 busy cores), so allow 3 s per 1000.
limit=$(( 170 + PEERS * 3 / 1000 ))
log "bench-signal: PEERS=$PEERS ACTIVE=$ACTIVE, fd limit $(ulimit -n), time limit ${limit} s" >&2
# Inside the namespace (its own sysctls): every port above 1024 is an
# ephemeral port, so each loopback source address the load generator uses
# carries ~48,000 clients instead of ~21,000 (it spreads the clients over
# 127.0.0.1, 127.0.0.2, ... as needed either way).
exec timeout --kill-after=10 "$limit" bash scripts/netns.sh sh -c '
  echo "1024 65535" > /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null ||
    echo "[shoal] note: cannot widen net.ipv4.ip_local_port_range in the namespace; using more source addresses" >&2
  exec "$@"' sh target/release/examples/bench_signal target/release/shoal-signal
