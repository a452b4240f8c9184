// End to end: the admin console (web-demo/admin/, served by the signal
// server at /admin/) in headless Chromium. The operator logs in with the
// admin key, sees the channel and a viewer appear with live charts, changes
// the matching settings, starts a live channel on the seed from the "New
// channel" form and stops it, and kicks the viewer from its row: the viewer's
// player stops, and the console reports the acknowledgement. A screenshot of
// the console is saved to .shoal/artifacts/console.png.

import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdir } from 'node:fs/promises';
import {
  ROOT, startServers, launchBrowser, listVods, fetchJson, waitFor, sleep, assertIsolatedNetns,
  recordCandidates,
} from './lib.mjs';

const log = (m) => process.stderr.write(`  ${m}\n`);
const ADMIN = 'e2e-console-admin-key-0123456789abcdef';
export const SCREENSHOT = path.join(ROOT, '.shoal/artifacts/console.png');

test('admin console: log in, see a viewer with charts, change settings, kick it', { timeout: 240_000 }, async () => {
  assertIsolatedNetns();
  const servers = await startServers({
    cache: path.join(ROOT, '.shoal/cache'),
    signalArgs: ['--admin-key', ADMIN],
  });
  let browser;
  try {
    const [vod] = await listVods(servers.seedUrl);
    browser = await launchBrowser();
    const consoleCtx = await browser.newContext({ viewport: { width: 1280, height: 1100 } });
    const admin = await consoleCtx.newPage();
    admin.on('pageerror', (e) => log(`console: page error: ${e.message}`));
    await admin.goto(new URL('/admin/', servers.signalUrl).toString());

    // A wrong key is refused with the server's reason.
    await admin.fill('#key', 'not-the-key');
    await admin.click('#login button');
    await waitFor(async () => (await admin.textContent('#login-error')).length > 0, { what: 'login error shown' });
    assert.match(await admin.textContent('#login-error'), /wrong admin credential/);
    assert.equal(await admin.isVisible('#app'), false);
    await admin.fill('#key', ADMIN);
    await admin.click('#login button');
    await admin.waitForSelector('#app', { state: 'visible', timeout: 10_000 });

    // A viewer starts playing.
    const viewerCtx = await browser.newContext();
    await recordCandidates(viewerCtx);
    const viewer = await viewerCtx.newPage();
    const u = new URL('/player.html', servers.signalUrl);
    u.searchParams.set('src', vod.manifestUrl);
    u.searchParams.set('signal', servers.signalWs);
    await viewer.goto(u.toString());
    const vstats = () => viewer.evaluate(() => window.player && window.player.stats());
    await waitFor(async () => (await vstats())?.peerId, { timeoutMs: 60_000, what: 'viewer welcomed' });
    const peerId = (await vstats()).peerId;

    // It appears in the console, in its channel, with charts drawn.
    const row = `#viewers tr[data-peer="${peerId}"]`;
    await admin.waitForSelector(row, { timeout: 15_000 });
    await waitFor(async () => (await admin.textContent('#channels tbody')).includes(vod.contentId), { what: 'channel listed' });
    assert.match(await admin.textContent('#seeds tbody'), /127\.0\.0\.1/);
    // Each channel's status: the seed holds this one as a VOD.
    const channelStatus = (name) => admin.$$eval('#channels tbody tr', (rows, n) => {
      const r = rows.find((tr) => tr.cells[0].textContent === n);
      return r ? r.cells[1].textContent : null;
    }, name);
    assert.equal(await channelStatus(vod.contentId), 'vod');
    // The seed's own report (sent right after its welcome, then every 5 s).
    await waitFor(async () => /reporting/.test(await admin.textContent('#seeds tbody')), { what: 'seed report shown' });
    assert.match(await admin.textContent('#seeds tbody'), /\d+ ok, \d+ interrupted/);
    assert.match(await admin.textContent('#seeds tbody'), /\d+ viewers, \d+ per viewer/);
    await sleep(6000); // a few chart points
    const canvases = await admin.$$eval('.charts canvas', (c) => c.length);
    assert.ok(canvases >= 3, `three charts drawn (${canvases} canvases)`);

    // Settings change through the form.
    await admin.fill('#match-max', '12');
    await admin.click('#settings button');
    await waitFor(async () => (await admin.textContent('#settings-result')) === 'saved', { what: 'settings saved' });
    const settings = await fetchJson(new URL('/api/admin/settings', servers.signalUrl).toString(), {
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    assert.equal(settings.match_max, 12);

    // A live channel created from the "New channel" form on the seed, then
    // stopped from its row.
    await waitFor(async () => (await admin.$$eval('#nc-seed option', (o) => o.length)) > 0, { what: 'seed in the form' });
    await admin.selectOption('#nc-kind', 'live');
    await admin.fill('#nc-name', 'e2e-news');
    await admin.fill('#nc-source', 'testsrc');
    await admin.click('#new-channel button');
    await waitFor(async () => /started/.test(await admin.textContent('#nc-result')), { timeoutMs: 35_000, what: 'live channel started' });
    const stop = '#channels button.stop';
    await waitFor(async () => (await admin.textContent('#channels tbody')).includes('e2e-news') && (await admin.$(stop)) !== null,
      { timeoutMs: 10_000, what: 'new live channel listed with a Stop button' });
    assert.match(await channelStatus('e2e-news'), /^(live|interrupted)$/);
    const seeds = await fetchJson(new URL('/api/seeds', servers.signalUrl).toString());
    assert.ok(seeds.seeds.some((s) => s.live?.some((l) => l.channel === 'e2e-news' && l.public_key.length === 64)), 'the seed announces the channel key');

    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await admin.screenshot({ path: SCREENSHOT, fullPage: true });
    log(`screenshot: ${SCREENSHOT}`);
    await admin.click(stop);
    await waitFor(async () => /stopped/.test(await admin.textContent('#status')), { timeoutMs: 15_000, what: 'live channel stopped' });
    await waitFor(async () => (await admin.$(stop)) === null, { timeoutMs: 10_000, what: 'Stop button gone' });

    // Kick from the viewer's row.
    await admin.fill('#ban-s', '60');
    await admin.click(`${row} button.kick`);
    await waitFor(async () => (await vstats()).state === 'destroyed', { timeoutMs: 5000, what: 'viewer stopped' });
    assert.match((await vstats()).error, /removed by the operator/);
    await waitFor(async () => /acknowledged/.test(await admin.textContent('#status')), { timeoutMs: 5000, what: 'kick acknowledged in the console' });
    await waitFor(async () => (await admin.$(row)) === null, { timeoutMs: 5000, what: 'viewer row gone' });
    await waitFor(async () => /kick/.test(await admin.textContent('#events')), { timeoutMs: 5000, what: 'kick in the event list' });
  } finally {
    if (browser) await browser.close().catch(() => {});
    await servers.stop();
  }
});
