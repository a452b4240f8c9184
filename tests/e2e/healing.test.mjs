// End to end: viewers heal themselves. Three Chromium viewers play while the
// signal server is restarted (same address) and then the seed their manifest
// came from is killed; a second seed holds the same content. Every viewer
// reconnects to the signal server and rejoins its swarm, moves its HTTP
// fetches to the surviving seed, and plays on without a stall over 2 s.

import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  ROOT, startServers, launchBrowser, listVods, fetchJson, sleep, waitFor, assertIsolatedNetns,
  assertLoopbackCandidates, recordCandidates,
} from './lib.mjs';

const log = (m) => process.stderr.write(`  ${m}\n`);

test('signal server restart and a dead seed are survived by every viewer', { timeout: 300_000 }, async () => {
  assertIsolatedNetns();
  const cache = path.join(ROOT, '.shoal/cache');
  const servers = await startServers({ cache });
  let browser;
  try {
    const seedB = await servers.addSeed({ cache });
    const [vod] = await listVods(servers.seedUrl);
    browser = await launchBrowser();
    const pages = [];
    for (let i = 0; i < 3; i++) {
      const ctx = await browser.newContext();
      await recordCandidates(ctx);
      const page = await ctx.newPage();
      page.on('pageerror', (e) => log(`viewer ${i}: page error: ${e.message}`));
      const u = new URL('/player.html', servers.signalUrl);
      u.searchParams.set('src', vod.manifestUrl);
      u.searchParams.set('signal', servers.signalWs);
      await page.goto(u.toString());
      pages.push(page);
      await sleep(2000);
    }
    const stats = () => Promise.all(pages.map((p) => p.evaluate(() => window.player && window.player.stats())));
    await waitFor(async () => (await stats()).every((s) => s && s.currentTime > 3), { timeoutMs: 60_000, what: 'all viewers playing' });
    await sleep(8000);
    const before = await stats();
    log(`before: ${JSON.stringify(before.map((s) => ({ t: s.currentTime, stalls: s.stalls })))}`);

    log('restarting the signal server');
    await servers.restartSignal();
    const swarmOf = async () => {
      const v = await fetchJson(new URL('/api/swarms', servers.signalUrl).toString());
      return (v.swarms || []).find((s) => s.swarm === vod.contentId);
    };
    const ids = new Set(before.map((s) => s.peerId));
    await waitFor(async () => {
      const sw = await swarmOf();
      const viewers = (sw?.peers || []).filter((p) => p.role === 'viewer');
      return viewers.length === 3;
    }, { timeoutMs: 30_000, intervalMs: 500, what: 'all three viewers back in the swarm after the restart' });

    log('killing the seed the manifest came from');
    await servers.killSeed();
    const killedAt = Date.now();
    await sleep(25_000);
    const after = await stats();
    const elapsed = (Date.now() - killedAt) / 1000;
    log(`after: ${JSON.stringify(after.map((s) => ({ t: s.currentTime, stalls: s.stalls, stalledMs: s.stalledMs, http: s.bytesFromHttp, peers: s.peers })))}`);
    after.forEach((s, i) => {
      assert.equal(s.error, null, `viewer ${i}: ${s.error}`);
      assert.ok(s.currentTime - before[i].currentTime >= elapsed, `viewer ${i} played ${s.currentTime - before[i].currentTime} s`);
      assert.ok(s.stalledMs - before[i].stalledMs <= 2000, `viewer ${i} stalled ${s.stalledMs - before[i].stalledMs} ms`);
    });
    // The surviving seed served what the viewers still fetched from an origin.
    const statsB = await fetchJson(new URL('/api/stats', seedB.url).toString());
    log(`seed B: ${JSON.stringify(statsB)}`);
    assert.ok(statsB.http_bytes_served + statsB.rtc_bytes_served > 0, 'the second seed served the viewers');
    for (const p of pages) await assertLoopbackCandidates(p);
    assert.ok(ids.size === 3);
  } catch (e) {
    e.message += `\n--- server logs ---\n${servers.logs().split('\n').slice(-60).join('\n')}`;
    throw e;
  } finally {
    if (browser) await browser.close().catch(() => {});
    await servers.stop();
  }
});
