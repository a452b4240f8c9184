// End to end: a VOD video plays peer to peer in real browsers.
// Real signal server, real seed (ffmpeg packaging, HTTP origin, webrtc-rs),
// real headless Chromium viewers with the Wasm peer, WebRTC on loopback.

import test from 'node:test';
import assert from 'node:assert/strict';
import { runVod } from './vod-run.mjs';

/** How many segments start before `ms`. */
function segmentsUpTo(manifest, ms) {
  let t = 0;
  let n = 0;
  for (const seg of manifest.segments) {
    if (t >= ms) break;
    n += 1;
    t += seg.duration_ms;
  }
  return n;
}

const log = (m) => process.stderr.write(`  ${m}\n`);

test('four viewers joining 3 s apart watch 60 s, mostly from each other', { timeout: 300_000 }, async () => {
  const { figures, perViewer, errors, manifest } = await runVod({ viewers: 4, watchS: 60, gapS: 3, log });
  log(`figures: ${JSON.stringify(figures)}`);
  assert.deepEqual(errors, []);
  perViewer.forEach((s, i) => {
    assert.equal(s.error, null, `viewer ${i} had a fatal error`);
    assert.ok(s.currentTime >= 50, `viewer ${i} played only ${s.currentTime} s`);
    // What played was appended: every segment up to the playhead reached the media buffer.
    const needed = segmentsUpTo(manifest, s.currentTime * 1000);
    assert.ok(s.segmentsAppended >= needed, `viewer ${i}: ${s.segmentsAppended} segments appended, ${needed} needed to reach ${s.currentTime} s`);
    assert.equal(s.verifyFailures, 0, `viewer ${i} saw corrupt data`);
  });
  assert.ok(figures.p2p_share > 0.5, `P2P share ${figures.p2p_share} is not above half`);
});
