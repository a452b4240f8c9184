#!/usr/bin/env bash
# Fuzzes swarm-proto's decoders with cargo-fuzz (libFuzzer + AddressSanitizer):
#   wire_decode     wire::decode (and the encode round trip)
#   signal_decode   signal::ClientMsg/ServerMsg::decode (and encode round trips)
#   manifest_parse  Manifest::from_json and the queries on what it accepts
#   live_manifest_parse  LiveManifest::from_json (live.json) and its descriptions
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (npm run fuzz [-- SECONDS])
#   SECONDS_PER_TARGET defaults to $FUZZ_SECONDS, else 240. Targets run one
#   after the other (the machine has 2 cores), each under `nice`.
#   FUZZ_TARGETS="wire_decode ..." picks a subset.
#
# Prints one summary line per target (inputs executed, crash-free or not) and
# exits non-zero if any target crashed or failed to build; the crashing input
# stays in swarm-proto/fuzz/artifacts/<target>/ and its path is printed.
# New interesting inputs accumulate in swarm-proto/fuzz/corpus/<target>/ and
# are reused by the next run; full logs go to swarm-proto/fuzz/logs/.
# Needs no network once built; cargo-fuzz comes from scripts/setup.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

SECONDS_PER_TARGET="${1:-${FUZZ_SECONDS:-240}}"
[[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]] \
  || die "fuzz: seconds per target must be a positive integer, got '$SECONDS_PER_TARGET'"
read -r -a TARGETS <<<"${FUZZ_TARGETS:-wire_decode signal_decode manifest_parse live_manifest_parse}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "fuzz: cargo-fuzz is missing, running scripts/setup.sh"
  bash scripts/setup.sh
  cargo fuzz --version >/dev/null 2>&1 || die "fuzz: cargo-fuzz still missing after setup"
fi

FUZZ_DIR="$ROOT/swarm-proto/fuzz"
LOG_DIR="$FUZZ_DIR/logs"
mkdir -p "$LOG_DIR"
# cargo-fuzz needs nightly features; this lets the stable toolchain use them.
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

dict_for() {
  case "$1" in
    signal_decode) echo "$FUZZ_DIR/dicts/signal.dict" ;;
    manifest_parse) echo "$FUZZ_DIR/dicts/manifest.dict" ;;
    live_manifest_parse) echo "$FUZZ_DIR/dicts/manifest.dict" ;;
  esac
}

# Build first, so that a build error is reported as such and the timed runs
# below start at once (`cargo fuzz run` then finds everything up to date).
log "fuzz: building ${TARGETS[*]} (the first build takes a few minutes)"
build_started=$SECONDS
build_log="$LOG_DIR/build.log"
: >"$build_log"
if [ -z "${FUZZ_TARGETS:-}" ]; then
  build_sets=("")          # `cargo fuzz build` without a target builds them all
else
  build_sets=("${TARGETS[@]}")
fi
for t in "${build_sets[@]}"; do
  if ! (cd swarm-proto && nice cargo fuzz build ${t:+"$t"}) >>"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    die "fuzz: build failed (full log: ${build_log#"$ROOT"/})"
  fi
done
log "fuzz: build done in $((SECONDS - build_started)) s"

summary=()
failed=0
for target in "${TARGETS[@]}"; do
  corpus="$FUZZ_DIR/corpus/$target"
  seeds="$FUZZ_DIR/seeds/$target"
  tlog="$LOG_DIR/$target.log"
  mkdir -p "$corpus" "$FUZZ_DIR/artifacts/$target"
  # cargo-fuzz itself sets -artifact_prefix to artifacts/<target>/.
  args=(-max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=1024 -timeout=30
        -print_final_stats=1)
  dict="$(dict_for "$target")"
  if [ -n "$dict" ]; then args+=(-dict="$dict"); fi
  # The first corpus directory receives new inputs; the seeds are only read.
  dirs=("$corpus")
  if [ -d "$seeds" ]; then dirs+=("$seeds"); fi

  log "fuzz: $target for $SECONDS_PER_TARGET s (log: ${tlog#"$ROOT"/})"
  rc=0
  # The outer timeout only catches a fuzzer that stops honouring its limit.
  (cd swarm-proto && timeout --kill-after=30 $((SECONDS_PER_TARGET * 2 + 300)) \
    nice cargo fuzz run "$target" "${dirs[@]}" -- "${args[@]}") >"$tlog" 2>&1 || rc=$?

  # libFuzzer ends a clean run with "#N DONE ..." and "Done N runs in T
  # second(s)"; after a crash, -print_final_stats still gives the count.
  runs="$(sed -n 's/^Done \([0-9][0-9]*\) runs in .*/\1/p' "$tlog" | tail -n 1)"
  [ -n "$runs" ] || runs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9][0-9]*\).*/\1/p' "$tlog" | tail -n 1)"
  [ -n "$runs" ] || runs="$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$tlog" | tail -n 1)"
  [ -n "$runs" ] || runs="?"
  crash_file="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$tlog" | tail -n 1)"

  if [ "$rc" -eq 0 ] && [ -z "$crash_file" ] && [ "$runs" != "?" ]; then
    summary+=("$(printf '%-15s %11s inputs  crash-free' "$target" "$runs")")
    continue
  fi
  failed=1
  if [ -n "$crash_file" ]; then
    summary+=("$(printf '%-15s %11s inputs  CRASH: %s' "$target" "$runs" "$crash_file")")
  else
    summary+=("$(printf '%-15s %11s inputs  FAILED (exit %s), see %s' "$target" "$runs" "$rc" "$tlog")")
  fi
  printf '%s\n' "----- $target failed (full log: $tlog) -----" >&2
  if [ -n "$crash_file" ]; then
    # The panic message or sanitizer report, then the input itself.
    grep -E -A6 'panicked at|^==[0-9]+==ERROR' "$tlog" | head -n 30 >&2 || true
    grep -E '^SUMMARY:' "$tlog" >&2 || true
    printf 'crashing input: %s\n' "$crash_file" >&2
    if [ -f "$crash_file" ] && [ "$(wc -c <"$crash_file")" -le 8192 ]; then
      printf 'as base64: %s\n' "$(base64 -w0 "$crash_file")" >&2
    fi
    printf 'reproduce: cd swarm-proto && RUSTC_BOOTSTRAP=1 cargo fuzz run %s %s\n' \
      "$target" "$crash_file" >&2
  else
    grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|INITED)' "$tlog" | tail -n 40 >&2 || true
  fi
  printf '%s\n' "-----" >&2
done

log "fuzz: summary ($SECONDS_PER_TARGET s per target)"
for line in "${summary[@]}"; do log "  $line"; done
[ "$failed" -eq 0 ] || die "fuzz: a target crashed or failed (details above)"
log "fuzz: all targets crash-free"
