// First end-to-end check of the harness itself, needing no player: inside
// the loopback-only namespace, start the real signal server and seed on the
// sample video, check their health, fetch the VOD library, the manifest, the
// playlist and every segment over HTTP (verifying each SHA-256 against the
// manifest), and load the demo page in headless Chromium.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import test from 'node:test';
import {
  SAMPLE_FILE,
  WEB_DIR,
  assertIsolatedNetns,
  demoUrl,
  fetchBytes,
  fetchJson,
  fetchOk,
  launchBrowser,
  listVods,
  recordCandidates,
  sha256Hex,
  startServers,
  withTimeout,
} from './lib.mjs';

const SAMPLE_SECONDS = 120;

test('servers start on the sample and serve verifiable segments', { timeout: 420_000 }, async (t) => {
  assertIsolatedNetns();
  assert.ok(existsSync(SAMPLE_FILE), `${SAMPLE_FILE} is missing: run scripts/make-sample.sh`);

  const servers = await startServers();
  t.after(() => servers.stop());
  t.diagnostic(`signal ${servers.signalUrl}, seed ${servers.seedUrl}`);

  await t.test('both servers answer /healthz', async () => {
    await fetchOk(new URL('/healthz', servers.signalUrl));
    await fetchOk(new URL('/healthz', servers.seedUrl));
  });

  let manifest;
  let manifestUrl;
  await t.test('the seed lists the sample and serves its manifest', async () => {
    const vods = await listVods(servers.seedUrl);
    assert.ok(vods.length >= 1, 'the VOD library is empty');
    ({ manifestUrl } = vods[0]);
    manifest = await fetchJson(manifestUrl);
    assert.equal(manifest.version, 1);
    assert.match(manifest.content_id, /^[A-Za-z0-9_-]{1,64}$/);
    if (vods[0].contentId) assert.equal(manifest.content_id, vods[0].contentId);
    assert.ok(Array.isArray(manifest.segments) && manifest.segments.length > 0, 'manifest has no segments');
    assert.ok(manifest.init?.uri, 'manifest has no init segment');
    assert.match(manifest.mime ?? '', /^(video|audio)\/mp4/);
    const totalMs = manifest.segments.reduce((s, e) => s + (e.duration_ms ?? 0), 0);
    assert.ok(
      Math.abs(totalMs - SAMPLE_SECONDS * 1000) <= 0.05 * SAMPLE_SECONDS * 1000,
      `segments add up to ${totalMs} ms, the sample lasts ${SAMPLE_SECONDS} s`,
    );
    t.diagnostic(`${manifest.content_id}: ${manifest.segments.length} segments, ${totalMs} ms`);
  });

  await t.test('the HLS playlist is served', { skip: !manifest && 'no manifest' }, async () => {
    const text = await (await fetchOk(new URL(manifest.playlist, manifestUrl))).text();
    assert.match(text, /^#EXTM3U/);
  });

  await t.test('every segment matches its SHA-256 in the manifest', { skip: !manifest && 'no manifest' }, async () => {
    const entries = [manifest.init, ...manifest.segments];
    let next = 0;
    let bytes = 0;
    const worker = async () => {
      while (next < entries.length) {
        const e = entries[next++];
        const data = await fetchBytes(new URL(e.uri, manifestUrl));
        assert.equal(data.length, e.size, `${e.uri}: size`);
        assert.equal(sha256Hex(data), e.sha256, `${e.uri}: SHA-256`);
        bytes += data.length;
      }
    };
    await withTimeout(Promise.all([worker(), worker(), worker(), worker()]), 120_000, 'fetching all segments');
    t.diagnostic(`${entries.length} segments, ${bytes} bytes verified`);
  });

  const hasPage = existsSync(path.join(WEB_DIR, 'index.html'));
  await t.test('the demo page loads in Chromium', { skip: !hasPage && 'web-demo/index.html does not exist yet' }, async () => {
    const browser = await launchBrowser();
    try {
      const ctx = await browser.newContext();
      await recordCandidates(ctx);
      const page = await ctx.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      const res = await page.goto(demoUrl(servers.signalUrl, servers.seedUrl), { timeout: 30_000, waitUntil: 'load' });
      assert.ok(res, 'no response for the demo page');
      assert.equal(res.status(), 200);
      if (errors.length) t.diagnostic(`page errors: ${errors.join(' | ')}`);
    } finally {
      await browser.close();
    }
  });
});
