// One VOD swarm run, shared by the end-to-end test (vod.test.mjs) and the
// benchmark (bench-vod.mjs): starts the real signal server and seed on the
// sample video, opens N headless Chromium viewers `gapS` seconds apart on
// the embed page, lets each watch `watchS` seconds, and collects figures.
//
// Must run inside a loopback-only network namespace (scripts/netns.sh).

import path from 'node:path';
import {
  ROOT, startServers, launchBrowser, listVods, fetchJson, fetchBytes, sleep, waitFor,
  assertIsolatedNetns, assertLoopbackCandidates, recordCandidates, bundleGzBytes,
} from './lib.mjs';

/** Bytes of the segments covering the first `watchMs` of a manifest. */
export function copyBytes(manifest, watchMs) {
  let t = 0;
  let bytes = 0;
  for (const s of manifest.segments) {
    if (t >= watchMs) break;
    bytes += s.size;
    t += s.duration_ms;
  }
  return bytes;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : null;
};

/**
 * options: viewers, watchS, gapS, log (function).
 * Returns { figures, perViewer, manifest, seedStats, candidates }.
 */
export async function runVod({ viewers = 4, watchS = 60, gapS = 3, log = () => {} } = {}) {
  assertIsolatedNetns();
  const servers = await startServers({ cache: path.join(ROOT, '.shoal/cache') });
  let browser;
  try {
    const [vod] = await listVods(servers.seedUrl);
    if (!vod) throw new Error('the seed published no video');
    const manifest = await fetchJson(vod.manifestUrl);
    browser = await launchBrowser();
    const pages = [];
    const joinedAt = [];
    const errors = [];
    for (let i = 0; i < viewers; i++) {
      if (i > 0) await sleep(gapS * 1000);
      const ctx = await browser.newContext();
      await recordCandidates(ctx);
      const page = await ctx.newPage();
      page.on('pageerror', (e) => errors.push(`viewer ${i}: page error: ${e.message}`));
      page.on('console', (m) => {
        if (process.env.SHOAL_E2E_LOG) process.stderr.write(`viewer ${i}: ${m.text()}\n`);
      });
      const u = new URL('/player.html', servers.signalUrl);
      u.searchParams.set('src', vod.manifestUrl);
      u.searchParams.set('signal', servers.signalWs);
      joinedAt.push(Date.now());
      await page.goto(u.toString());
      pages.push(page);
      log(`viewer ${i} joined`);
    }
    // Each viewer watches watchS seconds from its own join.
    const stats = [];
    for (let i = 0; i < viewers; i++) {
      const left = joinedAt[i] + watchS * 1000 - Date.now();
      if (left > 0) await sleep(left);
      // The viewer stops watching: its figures are taken and it leaves the swarm.
      const s = await pages[i].evaluate(() => {
        if (!window.player) return { error: window.shoalError || 'player did not start' };
        const st = window.player.stats();
        window.player.destroy();
        document.querySelector('video').pause();
        return st;
      });
      stats.push(s);
      log(`viewer ${i}: ${JSON.stringify(s)}`);
    }
    const candidates = [];
    for (const p of pages) candidates.push(...(await assertLoopbackCandidates(p)));
    const seedStats = await fetchJson(new URL('/api/stats', servers.seedUrl).toString());
    await browser.close();
    browser = null;

    const downloaded = stats.reduce((a, s) => a + (s.bytesFromPeers || 0) + (s.bytesFromSeed || 0) + (s.bytesFromHttp || 0), 0);
    const fromPeers = stats.reduce((a, s) => a + (s.bytesFromPeers || 0), 0);
    const copy = copyBytes(manifest, watchS * 1000);
    const startups = stats.map((s) => s.startupMs).filter((x) => x != null);
    const figures = {
      viewers,
      watch_s: watchS,
      p2p_share: +(fromPeers / Math.max(1, downloaded)).toFixed(4),
      seed_egress_copies: +((seedStats.http_bytes_served + seedStats.rtc_bytes_served) / copy).toFixed(4),
      startup_ms_median: startups.length ? Math.round(median(startups)) : null,
      startup_ms_max: startups.length ? Math.round(Math.max(...startups)) : null,
      stalls: stats.reduce((a, s) => a + (s.stalls || 0), 0),
      stalled_ms: Math.round(stats.reduce((a, s) => a + (s.stalledMs || 0), 0)),
      // Wasm linear memory never shrinks, so the figure at leave is the peak.
      wasm_memory_mb_max: +(Math.max(0, ...stats.map((s) => s.wasmMemoryBytes || 0)) / (1 << 20)).toFixed(1),
      bundle_gz_bytes: bundleGzBytes('shoal_peer'),
    };
    return { figures, perViewer: stats, manifest, seedStats, candidates, errors, servers };
  } catch (e) {
    e.message += `\n--- server logs ---\n${servers.logs().split('\n').slice(-60).join('\n')}`;
    throw e;
  } finally {
    if (browser) await browser.close().catch(() => {});
    await servers.stop();
  }
}
