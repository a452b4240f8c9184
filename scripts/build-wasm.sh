#!/usr/bin/env bash
# Builds the viewer (crate shoal-peer) for the browser into web-demo/pkg:
# cargo release build for wasm32, wasm-bindgen --target web, the lead's JS
# wrapper (peer-wasm/js/shoal.js + .d.ts) copied beside it, and the gzipped
# size of the .wasm printed. cargo is incremental, so a rebuild is quick.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
out=web-demo/pkg
wasm="${CARGO_TARGET_DIR:-target}"/wasm32-unknown-unknown/release/shoal_peer.wasm

log "wasm: cargo build -p shoal-peer --target wasm32-unknown-unknown --release"
cargo build -p shoal-peer --target wasm32-unknown-unknown --release
[ -f "$wasm" ] || die "$wasm was not produced (is shoal-peer a cdylib?)"

mkdir -p "$out"
log "wasm: wasm-bindgen --target web -> $out"
wasm-bindgen --target web --out-dir "$out" --out-name shoal_peer "$wasm"

for f in shoal.js shoal.d.ts; do
  if [ -f "peer-wasm/js/$f" ]; then
    cp "peer-wasm/js/$f" "$out/$f"
    log "wasm: copied peer-wasm/js/$f"
  fi
done

bg="$out/shoal_peer_bg.wasm"
raw=$(wc -c <"$bg")
gz=$(gzip -9c "$bg" | wc -c)
log "wasm: $bg: $raw bytes, $gz bytes gzipped (gzip -9)"
