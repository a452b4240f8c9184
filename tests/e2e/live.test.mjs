// End to end: a live channel plays peer to peer in real browsers.
// Real signal server, real seed (ffmpeg test picture cut into 1 s signed
// segments, HTTP origin, webrtc-rs), real headless Chromium viewers with the
// Wasm peer playing live.json, WebRTC on loopback.

import test from 'node:test';
import assert from 'node:assert/strict';
import { runLive } from './live-run.mjs';

const log = (m) => process.stderr.write(`  ${m}\n`);

test('four viewers joining 2 s apart watch a live channel 45 s, mostly from each other', { timeout: 300_000 }, async () => {
  const { figures, perViewer, errors, consoleErrors } = await runLive({ viewers: 4, watchS: 45, gapS: 2, segmentMs: 1000, log });
  process.stdout.write(`${JSON.stringify({ test: 'live', ...figures })}\n`);
  const context = () =>
    `\nfigures: ${JSON.stringify(figures)}\nviewers: ${JSON.stringify(perViewer)}` +
    (errors.length ? `\npage errors:\n${errors.join('\n')}` : '') +
    (consoleErrors.length ? `\nconsole errors:\n${consoleErrors.slice(-40).join('\n')}` : '');
  if (consoleErrors.length) log(`${consoleErrors.length} console error(s); last: ${consoleErrors.slice(-5).join(' | ')}`);
  assert.deepEqual(errors, [], `page errors${context()}`);
  perViewer.forEach((v, i) => {
    assert.equal(v.error, null, `viewer ${i} had a fatal error${context()}`);
    assert.notEqual(v.startup_ms, null, `viewer ${i} never started${context()}`);
    assert.equal(v.stalls, 0, `viewer ${i} stalled ${v.stalls} times (${v.stalled_ms} ms) after startup${context()}`);
    const appended = v.segments_appended ?? v.segments_verified;
    assert.ok(appended > 0, `viewer ${i} appended no segment${context()}`);
    assert.ok(
      v.signatures_verified >= appended,
      `viewer ${i}: ${v.signatures_verified} signatures verified for ${appended} segments appended${context()}`,
    );
    assert.equal(v.verify_failures, 0, `viewer ${i} saw corrupt or forged data${context()}`);
  });
  assert.ok(figures.p2p_share > 0.5, `P2P share ${figures.p2p_share} is not above half${context()}`);
  log(`latency median ${figures.latency_ms_median} ms, max ${figures.latency_ms_max} ms`);
  assert.notEqual(figures.latency_ms_median, null, `no latency sample${context()}`);
  assert.ok(figures.latency_ms_median <= 4000, `latency median ${figures.latency_ms_median} ms is above 4000 ms${context()}`);
});
