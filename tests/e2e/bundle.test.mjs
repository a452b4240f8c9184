// The player bundles as scripts/build-wasm.sh just built them (npm test
// builds them before the e2e tests): each shipped build, gzipped with its
// glue and the shoal.js loader, stays within the 120 KB budget of issue 6.
import assert from 'node:assert/strict';
import test from 'node:test';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { PKG_DIR, bundleGzBytes } from './lib.mjs';

const BUDGET = 120_000;

for (const name of ['shoal_peer', 'shoal_peer_live']) {
  test(`${name}: the gzipped bundle is at most ${BUDGET} bytes`, () => {
    const wasm = path.join(PKG_DIR, `${name}_bg.wasm`);
    assert.ok(existsSync(wasm), `${wasm} is missing: run scripts/build-wasm.sh`);
    const n = bundleGzBytes(name);
    console.log(`${name}: ${n} bytes gzipped (wasm + glue + shoal.js)`);
    assert.ok(n <= BUDGET, `${name} is ${n} bytes gzipped, over the ${BUDGET}-byte budget`);
  });
}
