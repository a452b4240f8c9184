// End to end: kick with acknowledgement. Two Chromium viewers (alice, bob)
// play and are connected to each other; the operator kicks alice through
// the admin API with a ban. Alice's player stops within 3 s with a visible
// message and acknowledges (the API call says so), bob drops his connection
// to her and plays on, and alice's rejoin with the same token is refused
// while the ban lasts.

import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  ROOT, startServers, launchBrowser, listVods, waitFor, sleep, assertIsolatedNetns,
  recordCandidates, assertLoopbackCandidates, hs256Token,
} from './lib.mjs';

const log = (m) => process.stderr.write(`  ${m}\n`);
const KEY = 'e2e-viewer-key-0123456789abcdef0123456789';
const ADMIN = 'e2e-admin-key-0123456789abcdef012345678';

test('a kicked viewer stops within 3 s, its peer drops it, a rejoin is refused while banned', { timeout: 240_000 }, async () => {
  assertIsolatedNetns();
  const servers = await startServers({
    cache: path.join(ROOT, '.shoal/cache'),
    signalArgs: ['--viewer-key', KEY, '--admin-key', ADMIN],
  });
  let browser;
  try {
    const [vod] = await listVods(servers.seedUrl);
    const now = Math.floor(Date.now() / 1000);
    const token = (sub) => hs256Token(KEY, { sub, exp: now + 600, channels: [vod.contentId] });
    browser = await launchBrowser();
    const open = async (sub) => {
      const ctx = await browser.newContext();
      await recordCandidates(ctx);
      const page = await ctx.newPage();
      page.on('pageerror', (e) => log(`${sub}: page error: ${e.message}`));
      const u = new URL('/player.html', servers.signalUrl);
      u.searchParams.set('src', vod.manifestUrl);
      u.searchParams.set('signal', servers.signalWs);
      u.searchParams.set('token', token(sub));
      await page.goto(u.toString());
      return page;
    };
    const stats = (page) => page.evaluate(() => window.player && window.player.stats());
    const alice = await open('alice');
    await sleep(1500);
    const bob = await open('bob');
    // Both play, each connected to the seed and to the other.
    await waitFor(async () => {
      const [a, b] = [await stats(alice), await stats(bob)];
      return a && b && a.currentTime > 2 && b.currentTime > 2 && a.peers >= 2 && b.peers >= 2;
    }, { timeoutMs: 60_000, what: 'alice and bob playing and connected to each other' });
    await assertLoopbackCandidates(alice);
    const bobBefore = await stats(bob);
    log(`before: bob peers ${bobBefore.peers}, t ${bobBefore.currentTime.toFixed(1)}`);

    const t0 = Date.now();
    const res = await fetch(new URL('/api/viewers/alice/kick', servers.signalUrl), {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ban_s: 120, message: 'removed for the test' }),
    });
    const body = await res.json();
    const apiMs = Date.now() - t0;
    log(`kick: ${res.status} ${JSON.stringify(body)} in ${apiMs} ms`);
    assert.equal(res.status, 200);
    assert.equal(body.connections.length, 1);
    assert.equal(body.connections[0].acked, true, 'alice acknowledged');
    assert.ok(apiMs < 3000, `the kick was acknowledged within 3 s (${apiMs} ms)`);

    await waitFor(async () => (await stats(alice)).state === 'destroyed', { timeoutMs: 3000, what: 'alice stopped' });
    const stoppedMs = Date.now() - t0;
    const a = await stats(alice);
    assert.match(a.error, /removed by the operator/);
    const notice = await alice.evaluate(() => {
      const n = document.querySelector('video + .shoal-notice');
      const v = document.getElementById('video');
      return { text: n && n.textContent, shown: !!n && n.getBoundingClientRect().height > 0, src: v.src, paused: v.paused };
    });
    assert.ok(notice.shown, 'the message is visible');
    assert.match(notice.text, /removed for the test/);
    assert.equal(notice.src, '', 'the video no longer plays Shoal media');

    // Bob drops his connection to alice and plays on.
    await waitFor(async () => (await stats(bob)).peers < bobBefore.peers, { timeoutMs: 3000, what: 'bob dropped alice' });
    const droppedMs = Date.now() - t0;
    const tBob = (await stats(bob)).currentTime;
    await sleep(3000);
    const bobAfter = await stats(bob);
    assert.ok(bobAfter.currentTime > tBob + 1.5, 'bob plays on');
    assert.equal(bobAfter.error, null);
    log(`alice stopped after ${stoppedMs} ms, bob dropped her after ${droppedMs} ms`);

    // Alice comes back with the same token: refused while banned.
    await alice.reload();
    await waitFor(async () => (await stats(alice))?.error, { timeoutMs: 30_000, what: 'alice refused' });
    assert.match((await stats(alice)).error, /access refused \(banned\)/);
  } finally {
    if (browser) await browser.close().catch(() => {});
    await servers.stop();
  }
});
