// One live channel run, shared by the end-to-end test (live.test.mjs) and
// the benchmark (bench-live.mjs): starts the real signal server and a seed
// with a live test-picture channel (`--live NAME=testsrc`), waits until the
// channel runs, opens N headless Chromium viewers `gapS` seconds apart on
// the embed page playing its live.json, lets each watch `watchS` seconds
// while sampling stats() every 500 ms, and collects figures.
//
// Must run inside a loopback-only network namespace (scripts/netns.sh).

import path from 'node:path';
import {
  ROOT, startServers, launchBrowser, fetchJson, sleep, waitFor, withTimeout,
  assertIsolatedNetns, assertLoopbackCandidates, recordCandidates, bundleGzBytes,
} from './lib.mjs';

const SAMPLE_MS = 500;

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : null;
};

/** A stats() figure under its camelCase name (shoal.d.ts) or its snake_case one. */
function stat(s, camel) {
  if (!s) return undefined;
  if (s[camel] !== undefined) return s[camel];
  return s[camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)];
}
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** Seed bytes sent so far (HTTP origin + WebRTC data channels). */
const seedBytes = (st) => num(st.http_bytes_served) + num(st.rtc_bytes_served);

/**
 * options: viewers, watchS, gapS, segmentMs, channel, pushCopies (undefined:
 * the seed's default), log (function).
 *
 * Returns { figures, perViewer, errors, consoleErrors, candidates, seedStats }.
 * `errors` are page errors and viewers that never got a player (the caller
 * asserts on them); `consoleErrors` are console.error lines of the pages.
 */
export async function runLive({
  viewers = 4,
  watchS = 45,
  gapS = 2,
  segmentMs = 1000,
  channel = 'demo-live',
  pushCopies,
  log = () => {},
} = {}) {
  assertIsolatedNetns();
  const seedArgs = ['--live', `${channel}=testsrc`, '--live-segment-ms', String(segmentMs)];
  if (pushCopies != null) seedArgs.push('--live-push-copies', String(pushCopies));
  const servers = await startServers({ cache: path.join(ROOT, '.shoal/cache'), seedArgs });
  let browser;
  const errors = [];
  const consoleErrors = [];
  try {
    const indexUrl = new URL('/live/index.json', servers.seedUrl).toString();
    const liveUrl = new URL(`/live/${channel}/live.json`, servers.seedUrl).toString();
    // The encoder starts, then the first segment is cut: bounded wait.
    await waitFor(
      async () => {
        const idx = await fetchJson(indexUrl, { timeoutMs: 5_000 });
        const c = Array.isArray(idx) && idx.find((x) => x.channel === channel);
        if (!c) throw new Error(`channel ${channel} not in ${JSON.stringify(idx).slice(0, 300)}`);
        if (c.status !== 'running') throw new Error(`channel ${channel} is ${c.status}${c.reason ? ` (${c.reason})` : ''}`);
        const m = await fetchJson(liveUrl, { timeoutMs: 5_000 });
        return Array.isArray(m.recent) && m.recent.length > 0;
      },
      { timeoutMs: 60_000, intervalMs: 500, what: `live channel ${channel} running with live.json` },
    );
    log(`channel ${channel} is running`);

    browser = await launchBrowser();
    const seedBefore = await fetchJson(new URL('/api/stats', servers.seedUrl).toString());
    const runStart = Date.now();

    const one = async (i) => {
      await sleep(Math.max(0, runStart + i * gapS * 1000 - Date.now()));
      const ctx = await browser.newContext();
      await recordCandidates(ctx);
      const page = await ctx.newPage();
      page.on('pageerror', (e) => errors.push(`viewer ${i}: page error: ${e.message}`));
      page.on('crash', () => errors.push(`viewer ${i}: page crashed`));
      page.on('console', (m) => {
        if (m.type() === 'error') {
          const at = m.location()?.url;
          if (/\/favicon\.ico$/.test(at || '')) return; // player.html has none

          consoleErrors.push(`viewer ${i}: ${m.text()}${at && !m.text().includes(at) ? ` (${at})` : ''}`);
        }
        if (process.env.SHOAL_E2E_LOG) process.stderr.write(`viewer ${i}: ${m.text()}\n`);
      });
      const u = new URL('/player.html', servers.signalUrl);
      u.searchParams.set('src', liveUrl);
      u.searchParams.set('signal', servers.signalWs);
      const joinedAt = Date.now();
      await page.goto(u.toString(), { timeout: 30_000 });
      log(`viewer ${i} joined`);
      const latencies = [];
      const stallTimes = [];
      let samples = 0;
      let last = null;
      const end = joinedAt + watchS * 1000;
      // Bounded in count as well as in time.
      for (let n = 0; n < Math.ceil((watchS * 1000) / SAMPLE_MS) + 4 && Date.now() < end; n++) {
        await sleep(Math.min(SAMPLE_MS, Math.max(0, end - Date.now())));
        const s = await withTimeout(
          page.evaluate(() => (window.player ? window.player.stats() : null)),
          10_000,
          `viewer ${i}: stats()`,
        );
        if (!s) continue;
        // When each stall was first seen (s since the run started): stalls of
        // every viewer at once point at the source or the seed.
        const stalls = num(stat(s, 'stalls'));
        if (stalls > num(stat(last, 'stalls'))) stallTimes.push(+((Date.now() - runStart) / 1000).toFixed(1));
        last = s;
        samples += 1;
        const lat = stat(s, 'latencyMs');
        if (stat(s, 'startupMs') != null && typeof lat === 'number' && Number.isFinite(lat)) latencies.push(lat);
      }
      // The viewer stops watching: its figures are taken and it leaves the swarm.
      const final = await withTimeout(
        page.evaluate(() => {
          if (!window.player) return { error: window.shoalError || 'player did not start', noPlayer: true };
          const st = window.player.stats();
          window.player.destroy();
          document.querySelector('video').pause();
          return st;
        }),
        10_000,
        `viewer ${i}: final stats()`,
      );
      if (final.noPlayer) errors.push(`viewer ${i}: ${final.error}`);
      // A viewer whose player never started may have opened no connection
      // (and reports its error above); any candidate it has must be loopback.
      const recorded = await page.evaluate(() => Array.isArray(window.__shoalCandidates));
      const candidates = recorded || !final.noPlayer ? await assertLoopbackCandidates(page, { min: final.noPlayer ? 0 : 1 }) : [];
      const s = final.noPlayer ? last || {} : final;
      const v = {
        viewer: i,
        error: stat(s, 'error') ?? null,
        startup_ms: stat(s, 'startupMs') ?? null,
        stalls: num(stat(s, 'stalls')),
        stalled_ms: Math.round(num(stat(s, 'stalledMs'))),
        bytes_from_peers: num(stat(s, 'bytesFromPeers')),
        bytes_from_seed: num(stat(s, 'bytesFromSeed')),
        bytes_from_http: num(stat(s, 'bytesFromHttp')),
        bytes_uploaded: num(stat(s, 'bytesUploaded')),
        segments_verified: num(stat(s, 'segmentsVerified')),
        segments_appended: stat(s, 'segmentsAppended') ?? null,
        signatures_verified: num(stat(s, 'signaturesVerified')),
        verify_failures: num(stat(s, 'verifyFailures')),
        current_time: num(stat(s, 'currentTime')),
        latency_ms_median: latencies.length ? Math.round(median(latencies)) : null,
        latency_ms_max: latencies.length ? Math.round(Math.max(...latencies)) : null,
        latency_samples: latencies.length,
        stall_times_s: stallTimes,
        samples,
        candidates: candidates.length,
        latencies,
      };
      log(`viewer ${i}: ${JSON.stringify({ ...v, latencies: undefined })}`);
      await ctx.close().catch(() => {});
      return v;
    };
    const perViewer = await withTimeout(
      Promise.all(Array.from({ length: viewers }, (_, i) => one(i))),
      (viewers * gapS + watchS + 120) * 1000,
      'live viewers',
    );
    const runS = (Date.now() - runStart) / 1000;
    const seedAfter = await fetchJson(new URL('/api/stats', servers.seedUrl).toString());
    // One copy of the stream over the run: the average segment size (from
    // the signed descriptions in live.json) times the segments cut meanwhile.
    const manifest = await fetchJson(liveUrl);
    const sizes = manifest.recent.map((m) => m.size);
    const avgSegBytes = sizes.reduce((a, b) => a + b, 0) / Math.max(1, sizes.length);
    const segS = (manifest.segment_ms || segmentMs) / 1000;
    const copyBytes = (avgSegBytes * runS) / segS;
    await browser.close();
    browser = null;

    const sum = (k) => perViewer.reduce((a, v) => a + v[k], 0);
    const received = sum('bytes_from_peers') + sum('bytes_from_seed') + sum('bytes_from_http');
    const allLat = perViewer.flatMap((v) => v.latencies);
    const startups = perViewer.map((v) => v.startup_ms).filter((x) => x != null);
    const seedSent = seedBytes(seedAfter) - seedBytes(seedBefore);
    const figures = {
      viewers,
      segment_s: segS,
      watch_s: watchS,
      gap_s: gapS,
      run_s: +runS.toFixed(1),
      p2p_share: +(sum('bytes_from_peers') / Math.max(1, received)).toFixed(4),
      seed_egress_copies: +(seedSent / Math.max(1, copyBytes)).toFixed(4),
      seed_http_bytes: seedAfter.http_bytes_served - seedBefore.http_bytes_served,
      seed_rtc_bytes: seedAfter.rtc_bytes_served - seedBefore.rtc_bytes_served,
      avg_segment_bytes: Math.round(avgSegBytes),
      latency_ms_median: allLat.length ? Math.round(median(allLat)) : null,
      latency_ms_max: allLat.length ? Math.round(Math.max(...allLat)) : null,
      startup_ms_median: startups.length ? Math.round(median(startups)) : null,
      startup_ms_max: startups.length ? Math.round(Math.max(...startups)) : null,
      stalls: sum('stalls'),
      stalled_ms: sum('stalled_ms'),
      signatures_verified: sum('signatures_verified'),
      verify_failures: sum('verify_failures'),
      bundle_gz_bytes: bundleGzBytes('shoal_peer_live'),
    };
    for (const v of perViewer) delete v.latencies;
    return { figures, perViewer, errors, consoleErrors, seedStats: seedAfter, servers };
  } catch (e) {
    if (errors.length) e.message += `\n--- page errors ---\n${errors.join('\n')}`;
    if (consoleErrors.length) e.message += `\n--- console errors ---\n${consoleErrors.slice(-40).join('\n')}`;
    e.message += `\n--- server logs ---\n${servers.logs().split('\n').slice(-60).join('\n')}`;
    throw e;
  } finally {
    if (browser) await browser.close().catch(() => {});
    await servers.stop();
  }
}
