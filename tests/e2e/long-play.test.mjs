// End to end: a 10-minute video (longer than the player's windows) played
// through with seeks in real Chromium. Memory stays bounded: the media
// buffer and the segment store stay inside their windows, Wasm memory under
// a stated bound, and nothing is fatal.
//
// Windows (swarm-proto Config defaults): segments kept 30 s behind and 40 s
// ahead of the playhead; media kept 30 s behind the playhead.

import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  ROOT, startServers, launchBrowser, listVods, fetchJson, sleep, waitFor, assertIsolatedNetns,
  assertLoopbackCandidates, recordCandidates,
} from './lib.mjs';

const log = (m) => process.stderr.write(`  ${m}\n`);
// Stated bounds: 30 s behind + 40 s ahead, plus the segments straddling each
// edge (2 s segments): 37 segments; media 30 s behind + what was fetched
// ahead (at most 40 s) + one segment.
const MAX_STORED_SEGMENTS = 37;
const MAX_BUFFERED_S = 30 + 40 + 4;
const MAX_WASM_MB = 64;

test('a 10-minute video plays through with seeks inside bounded memory', { timeout: 420_000 }, async () => {
  assertIsolatedNetns();
  const servers = await startServers({
    media: path.join(ROOT, '.shoal/media-long'),
    cache: path.join(ROOT, '.shoal/cache-long'),
    timeoutMs: 240_000,
  });
  let browser;
  try {
    const [vod] = await listVods(servers.seedUrl);
    const manifest = await fetchJson(vod.manifestUrl);
    const total = manifest.segments.reduce((a, s) => a + s.duration_ms, 0) / 1000;
    assert.ok(total >= 590, `the long sample is ${total} s`);
    browser = await launchBrowser();
    const ctx = await browser.newContext();
    await recordCandidates(ctx);
    const page = await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const u = new URL('/player.html', servers.signalUrl);
    u.searchParams.set('src', vod.manifestUrl);
    u.searchParams.set('signal', servers.signalWs);
    await page.goto(u.toString());
    await waitFor(() => page.evaluate(() => !!window.player || window.shoalError), { timeoutMs: 60_000, what: 'player start' });
    const seen = { stored: 0, buffered: 0, wasm: 0, samples: 0 };
    const sample = async () => {
      const s = await page.evaluate(() => window.player.stats());
      assert.equal(s.error, null, `player error: ${s.error}`);
      seen.stored = Math.max(seen.stored, s.storedSegments);
      seen.buffered = Math.max(seen.buffered, s.bufferedSeconds);
      seen.wasm = Math.max(seen.wasm, s.wasmMemoryBytes);
      seen.samples++;
      return s;
    };
    const playFor = async (seconds) => {
      for (let i = 0; i < seconds; i++) {
        await sleep(1000);
        await sample();
      }
    };
    const seek = async (t) => {
      await page.evaluate((t) => { document.querySelector('video').currentTime = t; }, t);
      log(`seek to ${t} s`);
    };
    await playFor(15);
    // Play faster than real time so that the whole video is crossed.
    await page.evaluate(() => { document.querySelector('video').playbackRate = 4; });
    for (const t of [120, 240, 360, 480]) {
      await playFor(12);
      await seek(t);
    }
    await seek(560);
    await waitFor(async () => (await sample()).currentTime >= total - 1 || (await page.evaluate(() => document.querySelector('video').ended)),
      { timeoutMs: 60_000, intervalMs: 1000, what: 'the end of the video' });
    await seek(60);
    await playFor(10);
    const last = await sample();
    log(`long play: ${JSON.stringify({ ...seen, wasm_mb: +(seen.wasm / 2 ** 20).toFixed(1), last: { currentTime: last.currentTime, stalls: last.stalls } })}`);
    assert.ok(last.currentTime > 60 && last.currentTime < 120, `playing again after the seek back (${last.currentTime} s)`);
    assert.ok(seen.stored <= MAX_STORED_SEGMENTS, `stored ${seen.stored} segments (bound ${MAX_STORED_SEGMENTS})`);
    assert.ok(seen.buffered <= MAX_BUFFERED_S, `buffered ${seen.buffered} s of media (bound ${MAX_BUFFERED_S})`);
    assert.ok(seen.wasm <= MAX_WASM_MB * 2 ** 20, `wasm memory ${seen.wasm} bytes (bound ${MAX_WASM_MB} MiB)`);
    assert.deepEqual(errors, []);
    await assertLoopbackCandidates(page);
  } catch (e) {
    e.message += `\n--- server logs ---\n${servers.logs().split('\n').slice(-40).join('\n')}`;
    throw e;
  } finally {
    if (browser) await browser.close().catch(() => {});
    await servers.stop();
  }
});
