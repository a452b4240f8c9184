#!/usr/bin/env bash
# Builds the viewer (crate shoal-peer) for the browser into web-demo/pkg,
# twice (on demand only, and live only):
# cargo build for wasm32 with the size profile `wasm` (Cargo.toml),
# wasm-bindgen --target web without the name section, wasm-opt -Oz
# (binaryen, installed by setup.sh), the lead's JS
# wrapper (peer-wasm/js/shoal.js + .d.ts) copied beside it, and the gzipped
# size of the .wasm printed. cargo is incremental, so a rebuild is quick.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
out=web-demo/pkg
wasm="${CARGO_TARGET_DIR:-target}"/wasm32-unknown-unknown/wasm/shoal_peer.wasm

# Two bundles: shoal_peer (videos on demand) and shoal_peer_live (live
# channels only: feature `live` without the default `vod`, so the on-demand
# engine is left out); shoal.js loads the one a page's src needs.
command -v wasm-opt >/dev/null 2>&1 || die "wasm-opt is missing: run scripts/setup.sh (Debian package binaryen)"
mkdir -p "$out"
build_bundle() {
  local name=$1
  shift
  log "wasm: cargo build -p shoal-peer --target wasm32-unknown-unknown --profile wasm $* ($name)"
  cargo build -p shoal-peer --target wasm32-unknown-unknown --profile wasm "$@"
  [ -f "$wasm" ] || die "$wasm was not produced (is shoal-peer a cdylib?)"
  # wasm-opt runs before wasm-bindgen: binaryen 108 (Debian's) mistypes the
  # externref table wasm-bindgen adds, so it only ever sees rustc's output.
  # The flags are the features rustc's wasm32 target emits (108 enables none
  # by default).
  local opt="${wasm%.wasm}.$name.opt.wasm"
  log "wasm: wasm-opt -Oz ($name)"
  wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
    "$wasm" -o "$opt"
  log "wasm: wasm-bindgen --target web -> $out/$name.js"
  wasm-bindgen --target web --remove-name-section --remove-producers-section \
    --out-dir "$out" --out-name "$name" "$opt"
}
build_bundle shoal_peer
build_bundle shoal_peer_live --no-default-features --features live

for f in shoal.js shoal.d.ts; do
  if [ -f "peer-wasm/js/$f" ]; then
    cp "peer-wasm/js/$f" "$out/$f"
    log "wasm: copied peer-wasm/js/$f"
  fi
done

for name in shoal_peer shoal_peer_live; do
  bg="$out/${name}_bg.wasm"
  raw=$(wc -c <"$bg")
  gz=$(gzip -9c "$bg" | wc -c)
  log "wasm: $bg: $raw bytes, $gz bytes gzipped (gzip -9)"
done

# The admin console's chart library (npm package uplot, a dev dependency
# installed by setup.sh), served by the signal server at /admin/vendor/.
if [ -f node_modules/uplot/dist/uPlot.iife.min.js ]; then
  mkdir -p web-demo/admin/vendor
  cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css web-demo/admin/vendor/
  log "console: copied uPlot to web-demo/admin/vendor"
else
  log "console: node_modules/uplot is missing (run scripts/setup.sh): the console will show no charts"
fi
