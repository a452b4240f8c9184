// npm run bench:control  (KICKS settable, default 20)
// The control plane measured: a Chromium viewer with a token plays, the
// operator kicks it through the admin API with a short ban; kick_ms is from
// the API call to the player having stopped (stats().state "destroyed",
// polled every 10 ms). Right after each kick the viewer reloads while still
// banned and must be refused as `banned` (refusals_checked); once the ban
// ends it reloads and plays again, and the next kick follows. Then the
// signal server's abuse cases (signal-server/tests/abuse.rs: each asserts
// that an honest viewer beside the abuser still gets welcome and joined
// within 500 ms and keeps its heartbeats) are run, and each one that passes
// counts as held. Prints one JSON line; progress goes to stderr.

import path from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  ROOT, startServers, launchBrowser, listVods, waitFor, sleep, assertIsolatedNetns, recordCandidates,
  assertLoopbackCandidates, hs256Token,
} from './lib.mjs';

const KICKS = Number(process.env.KICKS || 20);
const BAN_S = 2;
const KEY = 'bench-viewer-key-0123456789abcdef0123456789';
const ADMIN = 'bench-admin-key-0123456789abcdef0123456789';
const log = (m) => process.stderr.write(`${m}\n`);

assertIsolatedNetns();
const servers = await startServers({
  cache: path.join(ROOT, '.shoal/cache'),
  signalArgs: ['--viewer-key', KEY, '--admin-key', ADMIN],
});
let browser;
const kickMs = [];
let refusalsChecked = 0;
try {
  const [vod] = await listVods(servers.seedUrl);
  const token = hs256Token(KEY, { sub: 'bench-viewer', exp: Math.floor(Date.now() / 1000) + 3600, channels: [vod.contentId] });
  browser = await launchBrowser();
  const ctx = await browser.newContext();
  await recordCandidates(ctx);
  const page = await ctx.newPage();
  const u = new URL('/player.html', servers.signalUrl);
  u.searchParams.set('src', vod.manifestUrl);
  u.searchParams.set('signal', servers.signalWs);
  u.searchParams.set('token', token);
  const stats = () => page.evaluate(() => window.player && window.player.stats());
  await page.goto(u.toString());
  for (let i = 0; i < KICKS; i++) {
    await waitFor(async () => {
      const s = await stats();
      return s && s.state === 'running' && s.peerId && s.currentTime > 1;
    }, { timeoutMs: 60_000, what: `kick ${i + 1}: viewer playing` });
    await assertLoopbackCandidates(page);
    const t0 = performance.now();
    const res = await fetch(new URL('/api/viewers/bench-viewer/kick', servers.signalUrl), {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ban_s: BAN_S, message: `bench kick ${i + 1}` }),
    });
    if (res.status !== 200) throw new Error(`kick ${i + 1}: HTTP ${res.status} ${await res.text()}`);
    const bannedUntil = (await res.json()).banned_until;
    await waitFor(async () => (await stats()).state === 'destroyed', { timeoutMs: 10_000, intervalMs: 10, what: `kick ${i + 1}: stopped` });
    const ms = performance.now() - t0;
    kickMs.push(ms);
    // Back at once: refused while banned.
    await page.reload();
    await waitFor(async () => (await stats())?.error, { timeoutMs: 15_000, what: `kick ${i + 1}: refusal` });
    const err = (await stats()).error;
    if (!/access refused \(banned\)/.test(err)) throw new Error(`kick ${i + 1}: expected a ban refusal, got ${err}`);
    refusalsChecked++;
    log(`kick ${i + 1}: stopped after ${ms.toFixed(0)} ms; rejoin refused (banned)`);
    // The ban ends on a whole second: wait past it, then come back.
    const waitMs = bannedUntil * 1000 - Date.now() + 1100;
    if (waitMs > 0) await sleep(waitMs);
    if (i + 1 < KICKS) await page.reload();
  }
} finally {
  if (browser) await browser.close().catch(() => {});
  await servers.stop();
}

log('abuse cases: cargo test -p shoal-signal --test abuse');
const run = spawnSync('cargo', ['test', '-p', 'shoal-signal', '--test', 'abuse'], { cwd: ROOT, encoding: 'utf8', timeout: 600_000 });
const out = `${run.stdout}\n${run.stderr}`;
const cases = [...out.matchAll(/^test (\S+) \.\.\. (ok|FAILED)$/gm)];
for (const [, name, result] of cases) log(`abuse: ${name}: ${result}`);
if (cases.length === 0) throw new Error(`no abuse case ran:\n${out.slice(-2000)}`);

const sorted = [...kickMs].sort((a, b) => a - b);
const median = sorted[Math.floor(sorted.length / 2)];
process.stdout.write(JSON.stringify({
  kicks: kickMs.length,
  kick_ms_median: Math.round(median),
  kick_ms_max: Math.round(sorted[sorted.length - 1]),
  refusals_checked: refusalsChecked,
  abuse_cases: cases.length,
  abuse_cases_held: cases.filter(([, , r]) => r === 'ok').length,
}) + '\n');
