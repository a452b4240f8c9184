// End to end: admission by viewer token. The signal server requires tokens
// (--viewer-key, no open channel). A viewer with a valid token for the video
// plays and joins its swarm; viewers with a token for another channel, an
// expired token, a forged one, or none are refused: each player stops, shows
// the reason to the person watching (a banner after the video) and reports
// it in stats().error, and the swarm never lists them.

import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  ROOT, startServers, launchBrowser, listVods, fetchJson, waitFor, assertIsolatedNetns,
  recordCandidates, hs256Token,
} from './lib.mjs';

const log = (m) => process.stderr.write(`  ${m}\n`);
const KEY = 'e2e-viewer-key-0123456789abcdef0123456789';

test('viewer tokens: the entitled viewer plays, the others are refused with a visible reason', { timeout: 240_000 }, async () => {
  assertIsolatedNetns();
  const servers = await startServers({
    cache: path.join(ROOT, '.shoal/cache'),
    signalArgs: ['--viewer-key', KEY],
  });
  let browser;
  try {
    const [vod] = await listVods(servers.seedUrl);
    const now = Math.floor(Date.now() / 1000);
    const cases = [
      { name: 'entitled', token: hs256Token(KEY, { sub: 'alice', exp: now + 600, channels: [vod.contentId] }) },
      { name: 'other channel', token: hs256Token(KEY, { sub: 'bob', exp: now + 600, channels: ['another'] }), reason: 'not_entitled' },
      { name: 'expired', token: hs256Token(KEY, { sub: 'carol', exp: now - 5, channels: ['*'] }), reason: 'expired' },
      { name: 'forged', token: hs256Token('not-the-key-not-the-key-not-the-key', { sub: 'eve', exp: now + 600, channels: ['*'] }), reason: 'bad_signature' },
      { name: 'no token', token: null, reason: 'token_required' },
    ];
    browser = await launchBrowser();
    const pages = [];
    for (const c of cases) {
      const ctx = await browser.newContext();
      await recordCandidates(ctx);
      const page = await ctx.newPage();
      page.on('pageerror', (e) => log(`${c.name}: page error: ${e.message}`));
      const u = new URL('/player.html', servers.signalUrl);
      u.searchParams.set('src', vod.manifestUrl);
      u.searchParams.set('signal', servers.signalWs);
      if (c.token) u.searchParams.set('token', c.token);
      await page.goto(u.toString());
      pages.push({ ...c, page });
    }
    const stats = (p) => p.page.evaluate(() => window.player && window.player.stats());

    for (const p of pages.filter((p) => p.reason)) {
      await waitFor(async () => (await stats(p))?.error, { timeoutMs: 30_000, what: `${p.name}: refused` });
      const s = await stats(p);
      log(`${p.name}: ${s.error}`);
      assert.match(s.error, new RegExp(`access refused \\(${p.reason}\\)`), p.name);
      assert.equal(s.state, 'destroyed', `${p.name}: the player stopped`);
      const notice = await p.page.evaluate(() => {
        const n = document.querySelector('video + .shoal-notice');
        return n && { text: n.textContent, role: n.getAttribute('role'), shown: n.getBoundingClientRect().height > 0 };
      });
      assert.ok(notice, `${p.name}: a notice follows the video`);
      assert.equal(notice.role, 'alert');
      assert.ok(notice.shown, `${p.name}: the notice is visible`);
      assert.match(notice.text, new RegExp(p.reason), p.name);
      const playing = await p.page.evaluate(() => {
        const v = document.getElementById('video');
        return !v.paused && v.currentTime > 0 && !!v.src;
      });
      assert.equal(playing, false, `${p.name}: nothing plays`);
    }

    const ok = pages.find((p) => !p.reason);
    await waitFor(async () => {
      const s = await stats(ok);
      return s && s.currentTime > 2 && s.peerId;
    }, { timeoutMs: 60_000, what: 'the entitled viewer plays and is welcomed' });
    const s = await stats(ok);
    assert.equal(s.error, null);
    const swarms = await fetchJson(new URL('/api/swarms', servers.signalUrl).toString());
    const swarm = swarms.swarms.find((x) => x.swarm === vod.contentId);
    const viewers = swarm.peers.filter((p) => p.role === 'viewer').map((p) => p.peer_id);
    assert.deepEqual(viewers, [s.peerId], 'only the entitled viewer is in the swarm');
    const seeds = swarm.peers.filter((p) => p.role === 'seed');
    assert.equal(seeds.length, 1, 'the seed registered with its own credential');
  } finally {
    if (browser) await browser.close().catch(() => {});
    await servers.stop();
  }
});
