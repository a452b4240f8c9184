// End to end across real NATs: STUN, TURN and viewers behind NAT.
//
// The test builds its own networks out of namespaces (tests/e2e/nat-lab.mjs),
// as root inside scripts/netns.sh: a "public" network 198.51.100.0/24 where
// the signal server, the seed and coturn (Debian's turnserver) listen on
// 198.51.100.1, and four homes, each a computer behind its own NAT router
// (homes 1-2: port-preserving MASQUERADE, a port-restricted cone NAT;
// homes 3-4: MASQUERADE --random-fully, a symmetric NAT). One headless
// Chromium runs in each home it uses.
//
//   the lab: STUN answers with each router's public address; plain WebRTC
//            (no Shoal code) goes direct between cone homes, not between
//            symmetric ones, and through coturn when asked or needed
//   A: cone NATs, STUN+TURN configured: the two viewers connect directly
//      (selected pair srflx or prflx) and exchange segments
//   B: the same homes with iceTransportPolicy "relay" (?relay=1): they
//      connect through coturn; peer bytes are relay bytes only
//   C: symmetric NATs in both homes: direct fails, coturn carries it
//
// Each case checks every ICE candidate names an address the lab made (or
// loopback, or an mDNS name), and the lab checks that no namespace has a
// link or route to anything else: no packet can leave the lab.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import {
  ROOT,
  SAMPLE_MEDIA_DIR,
  TARGET_DIR,
  assertIsolatedNetns,
  fetchJson,
  launchBrowser,
  listVods,
  netInterfaces,
  spawnServer,
  stopServer,
} from './lib.mjs';
import { candidateTypes, createNatLab, rawWebRtcPair, runNatSwarm, startLabServers } from './nat-lab.mjs';

const log = (m) => process.stderr.write(`  ${m}\n`);
const ADMIN_KEY = 'nat-test-admin-key-0123456789abcdef';
const SEED_KEY = randomBytes(32).toString('hex');
const CLOUD_HTTP_PORT = 8081;
const CLOUD_UDP = [50000, 50009];

let lab;
let turn;
let servers;
let vod;
const started = Date.now();

before(async () => {
  assertIsolatedNetns();
  lab = await createNatLab({
    homes: [
      { nat: 'cone' },
      { nat: 'cone' },
      { nat: 'symmetric' },
      { nat: 'symmetric' },
      // A cloud instance behind a 1:1 NAT whose firewall opens one TCP port and a UDP range.
      { nat: 'cloud', open: { tcp: [CLOUD_HTTP_PORT], udp: CLOUD_UDP } },
    ],
    log,
  });
  turn = await lab.startTurn();
  servers = await startLabServers({
    turn,
    cache: path.join(ROOT, '.shoal/cache'),
    signalArgs: ['--admin-key', ADMIN_KEY],
    env: { SHOAL_SEED_KEY: SEED_KEY },
  });
  [vod] = await listVods(servers.seedUrl);
  assert.ok(vod, 'the seed published no video');
  log(`servers: signal ${servers.signalUrl}, seed ${servers.seedUrl}, turn ${turn.turn} (${Date.now() - started} ms)`);
});

after(async () => {
  const suffix = lab?.suffix;
  try {
    if (servers) await servers.stop();
    if (turn) await turn.stop();
  } finally {
    if (lab) await lab.destroy();
  }
  // Nothing of the lab is left: our namespace has lo alone again, no named namespace of ours remains.
  assert.deepEqual(netInterfaces(), ['lo'], 'the lab left links in the test namespace');
  if (suffix) {
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(suffix));
    assert.deepEqual(left, [], 'the lab left network namespaces behind');
  }
  log(`NAT test: ${((Date.now() - started) / 1000).toFixed(1)} s in all`);
});

const home = (i) => lab.homes[i - 1];

test('the lab: contained, NATs map to the routers, plain WebRTC direct through cone NATs and relayed through symmetric ones', { timeout: 90_000 }, async () => {
  const c = lab.assertContained();
  log(`contained: public links ${c.publicLinks.join(',')}; ${c.namespaces.length} namespaces`);
  for (const h of lab.homes) {
    const m = lab.stunMapped(h);
    assert.ok(m, `home ${h.index}: no STUN answer from ${turn.stun}`);
    assert.equal(m.address, h.wanIp, `home ${h.index}: STUN saw ${m.address}, not the router's ${h.wanIp}`);
  }
  // A symmetric NAT maps two sockets' flows (or one socket's to two
  // destinations) to unrelated ports; the cone NAT keeps the port.
  const browsers = [];
  try {
    const pages = [];
    for (const h of lab.homes.filter((x) => x.nat !== 'cloud')) {
      const b = await launchBrowser({ netns: h.host, loopback: false });
      browsers.push(b);
      pages.push(await (await b.newContext()).newPage());
    }
    const creds = turn.credentials('lab-check');
    const stunOnly = { iceServers: [{ urls: [turn.stun] }] };
    const both = { iceServers: [{ urls: [turn.stun] }, { urls: [turn.turn], ...creds }] };

    const direct = await rawWebRtcPair(pages[0], pages[1], stunOnly);
    log(`plain WebRTC, cone-cone, STUN: ${direct.route} (${JSON.stringify(direct.pairA)}), ${direct.connectMs} ms`);
    assert.ok(direct.connected && direct.received > 0);
    assert.ok(['srflx', 'prflx'].includes(direct.route), `cone-cone with STUN went ${direct.route}`);
    assert.ok(candidateTypes(direct.candidatesA).srflx >= 1, 'no srflx candidate gathered behind the cone NAT');

    const relayed = await rawWebRtcPair(pages[0], pages[1], { ...both, iceTransportPolicy: 'relay' });
    log(`plain WebRTC, cone-cone, relay policy: ${relayed.route}, ${relayed.connectMs} ms`);
    assert.ok(relayed.connected && relayed.received > 0);
    assert.equal(relayed.route, 'relay');

    // Symmetric-symmetric with STUN alone: no direct path (ICE would
    // take ~15 s to declare failure; 6 s without a connection suffices).
    let symDirect = null;
    try {
      symDirect = await rawWebRtcPair(pages[2], pages[3], stunOnly, { timeoutMs: 6_000 });
    } catch (e) {
      assert.match(e.message, /timed out/);
    }
    assert.ok(!symDirect?.connected, `symmetric NATs connected directly: ${JSON.stringify(symDirect?.pairA)}`);

    const symTurn = await rawWebRtcPair(pages[2], pages[3], both);
    log(`plain WebRTC, symmetric-symmetric, STUN+TURN: ${symTurn.route}, ${symTurn.connectMs} ms`);
    assert.ok(symTurn.connected && symTurn.received > 0);
    assert.equal(symTurn.route, 'relay');
  } finally {
    await Promise.all(browsers.map((b) => b.close().catch(() => {})));
  }
});

/** The viewers' figures, checked and summarised for the log. */
function summary(run) {
  return {
    watchedMs: run.watchedMs,
    pairs: run.matched.pairs.map((p) => ({ a: p.a, b: p.b, route: p.route, routes: p.routes, seen: p.pairsSeen, bytes: p.bytes, connectMs: p.connectMs })),
    seed: run.matched.seedConns.map((s) => ({ viewer: s.viewer, route: s.route, bytes: s.bytes })),
    viewers: run.stats.map((s) => ({
      error: s.error,
      fromPeers: s.bytesFromPeers,
      fromRelay: s.bytesFromRelay,
      fromSeed: s.bytesFromSeed,
      fromHttp: s.bytesFromHttp,
      connections: s.connections,
      iceErrors: s.iceErrors,
    })),
    candidates: run.candidates.map(candidateTypes),
  };
}

const sum = (xs) => xs.reduce((a, b) => a + (b || 0), 0);
const viewerPair = (run) => run.matched.pairs.find((p) => p.connected);

function checkCommon(run, what) {
  assert.deepEqual(run.errors, [], `${what}: page errors`);
  run.stats.forEach((s, i) => {
    assert.equal(s.error, null, `${what}: viewer ${i} had a fatal error`);
    assert.equal(s.verifyFailures, 0, `${what}: viewer ${i} saw corrupt data`);
    assert.ok(s.segmentsAppended > 0, `${what}: viewer ${i} appended nothing`);
    assert.ok(s.connections && typeof s.connections === 'object', `${what}: viewer ${i}: stats().connections missing`);
    assert.ok(typeof s.bytesFromRelay === 'number', `${what}: viewer ${i}: stats().bytesFromRelay missing`);
    // A wrong TURN credential or an unreachable STUN/TURN server shows here.
    assert.deepEqual(s.iceErrors ?? [], [], `${what}: viewer ${i}: ICE server errors`);
  });
  lab.assertContained();
}

test('A: viewers behind two cone NATs, with STUN, connect directly (srflx) and exchange segments', { timeout: 90_000 }, async () => {
  const run = await runNatSwarm({
    servers,
    vod,
    homes: [home(1), home(2)],
    timeoutMs: 40_000,
    minWatchMs: 3_000,
    log,
    done: ({ stats, matched }) => matched.pairs.some((p) => p.connected) && sum(stats.map((s) => s.bytesFromPeers)) > 0,
  });
  log(`A: ${JSON.stringify(summary(run))}`);
  checkCommon(run, 'A');
  const p = viewerPair(run);
  assert.ok(p, 'A: the two viewers did not connect to each other');
  assert.ok(['srflx', 'prflx'].includes(p.route), `A: viewer-viewer selected pair is ${p.route} (${JSON.stringify(p.routes)}), expected srflx/prflx`);
  assert.ok(p.bytes > 0, 'A: no bytes on the viewer-viewer connection');
  assert.ok(sum(run.stats.map((s) => s.bytesFromPeers)) > 0, 'A: no segment bytes from the other viewer');
  assert.equal(sum(run.stats.map((s) => s.bytesFromRelay)), 0, 'A: bytes went through TURN although a direct path exists');
  assert.ok(sum(run.stats.map((s) => (s.connections.srflx || 0) + (s.connections.prflx || 0))) >= 1, 'A: the player counted no srflx/prflx connection');
  assert.equal(sum(run.stats.map((s) => s.connections.relay)), 0, 'A: the player counted a relayed connection');
  assert.ok(run.candidates.some((c) => candidateTypes(c).srflx), 'A: no srflx candidate at all');
});

test('B: the same homes with iceTransportPolicy "relay" connect through coturn', { timeout: 90_000 }, async () => {
  const run = await runNatSwarm({
    servers,
    vod,
    homes: [home(1), home(2)],
    relay: true,
    timeoutMs: 40_000,
    minWatchMs: 3_000,
    log,
    done: ({ stats, matched }) => matched.pairs.some((p) => p.connected) && sum(stats.map((s) => s.bytesFromRelay)) > 0,
  });
  log(`B: ${JSON.stringify(summary(run))}`);
  checkCommon(run, 'B');
  const p = viewerPair(run);
  assert.ok(p, 'B: the two viewers did not connect to each other');
  assert.equal(p.route, 'relay', `B: viewer-viewer selected pair is ${p.route}`);
  assert.ok(p.bytes > 0, 'B: no bytes on the viewer-viewer connection');
  assert.ok(sum(run.stats.map((s) => s.bytesFromRelay)) > 0, 'B: no segment bytes through TURN');
  assert.equal(sum(run.stats.map((s) => s.bytesFromPeers)), 0, 'B: direct peer bytes under the relay policy');
  // Every connection of a viewer under the relay policy goes through TURN, the seed's too.
  for (const s of run.matched.seedConns.filter((c) => c.route)) assert.equal(s.route, 'relay', `B: viewer ${s.viewer}'s seed connection went ${s.route}`);
  for (const [i, c] of run.candidates.entries()) {
    const local = run.stats[i];
    assert.ok(local.connections.relay >= 1, `B: viewer ${i}: the player counted no relayed connection`);
    assert.ok(candidateTypes(c).relay >= 1, `B: viewer ${i}: no relay candidate`);
  }
});

test('C: viewers behind two symmetric NATs connect through coturn', { timeout: 90_000 }, async () => {
  const run = await runNatSwarm({
    servers,
    vod,
    homes: [home(3), home(4)],
    timeoutMs: 45_000,
    minWatchMs: 3_000,
    log,
    done: ({ stats, matched }) => matched.pairs.some((p) => p.connected) && sum(stats.map((s) => s.bytesFromRelay)) > 0,
  });
  log(`C: ${JSON.stringify(summary(run))}`);
  if (!viewerPair(run)) log(`C: checks: ${JSON.stringify(run.matched.pairs.map((p) => p.sides.map((x) => [x.checkedState, x.checks])))}`);
  checkCommon(run, 'C');
  const p = viewerPair(run);
  assert.ok(p, 'C: the two viewers did not connect to each other');
  assert.equal(p.route, 'relay', `C: viewer-viewer selected pair is ${p.route}`);
  assert.ok(p.bytes > 0, 'C: no bytes on the viewer-viewer connection');
  assert.ok(sum(run.stats.map((s) => s.bytesFromRelay)) > 0, 'C: no segment bytes through TURN');
  assert.equal(sum(run.stats.map((s) => s.bytesFromPeers)), 0, 'C: direct peer bytes between symmetric NATs');
});

test('D: a wrong TURN credential is reported in stats and the viewer plays on over HTTP', { timeout: 90_000 }, async () => {
  const bad = [{ urls: [turn.turn], username: `${Math.floor(Date.now() / 1000) + 600}:nobody`, credential: 'not-the-hmac' }];
  const run = await runNatSwarm({
    servers,
    vod,
    homes: [home(3)],
    relay: true,
    query: { ice: JSON.stringify(bad) },
    timeoutMs: 40_000,
    minWatchMs: 3_000,
    log,
    done: ({ stats }) => stats[0] && stats[0].segmentsAppended > 2 && (stats[0].iceErrors || []).length > 0,
  });
  const s = run.stats[0];
  log(`D: ${JSON.stringify({ iceErrors: s.iceErrors, connections: s.connections, fromHttp: s.bytesFromHttp, appended: s.segmentsAppended, error: s.error })}`);
  assert.deepEqual(run.errors, [], 'D: page errors');
  assert.equal(s.error, null, 'D: the viewer stopped');
  assert.ok(s.segmentsAppended > 2, 'D: the viewer did not play on');
  assert.ok(s.bytesFromHttp > 0, 'D: nothing came over HTTP');
  assert.ok(s.iceErrors.length > 0, 'D: the wrong credential was not reported');
  assert.ok(
    s.iceErrors.some((e) => e.includes(turn.turn.split('?')[0].replace(/^turn:/, '')) || / 401 /.test(e)),
    `D: the error names neither the server nor the refusal: ${JSON.stringify(s.iceErrors)}`,
  );
  assert.equal(s.connections.relay, 0, 'D: a relayed connection with a wrong credential');
  lab.assertContained();
});

test('E: a seed in the cloud behind a 1:1 NAT (--public-ip, --udp-ports) serves a viewer over WebRTC', { timeout: 150_000 }, async () => {
  const cloud = lab.homes.find((h) => h.nat === 'cloud');
  const seed = spawnServer(
    'cloud-seed',
    '/usr/sbin/ip',
    [
      'netns', 'exec', cloud.host,
      path.join(TARGET_DIR, 'debug', 'shoal-seed'),
      '--media', SAMPLE_MEDIA_DIR,
      '--cache', path.join(ROOT, '.shoal/cache'),
      '--listen', `${cloud.lanIp}:${CLOUD_HTTP_PORT}`,
      '--public-url', `http://${cloud.wanIp}:${CLOUD_HTTP_PORT}`,
      '--rtc-ip', cloud.lanIp,
      '--public-ip', cloud.wanIp,
      '--udp-ports', `${CLOUD_UDP[0]}-${CLOUD_UDP[1]}`,
      '--signal', servers.signalWs,
      '--seed-id', 'cloud1',
    ],
    { env: { SHOAL_SEED_KEY: SEED_KEY }, marker: 'SHOAL_SEED_LISTENING', timeoutMs: 120_000 },
  );
  try {
    await seed.ready;
    const stats = () => fetchJson(`http://${cloud.wanIp}:${CLOUD_HTTP_PORT}/api/stats`);
    await stats(); // its HTTP origin answers through the 1:1 NAT
    const run = await runNatSwarm({
      servers,
      vod,
      homes: [home(1)],
      timeoutMs: 40_000,
      minWatchMs: 3_000,
      log,
      done: ({ matched }) => matched.seedConns.some((c) => c.pair?.remoteAddress === cloud.wanIp && c.bytes > 0),
    });
    const conns = run.matched.seedConns.map((c) => ({ route: c.route, state: c.state, remote: c.pair && `${c.pair.remoteAddress}:${c.pair.remotePort}`, bytes: c.bytes }));
    const served = await stats();
    log(`E: seed connections ${JSON.stringify(conns)}; cloud seed rtc_bytes_served ${served.rtc_bytes_served}`);
    checkCommon(run, 'E');
    const c = run.matched.seedConns.find((x) => x.pair?.remoteAddress === cloud.wanIp);
    assert.ok(c, `E: the viewer never connected to the cloud seed at ${cloud.wanIp}: ${JSON.stringify(conns)}`);
    assert.ok(c.pair.remotePort >= CLOUD_UDP[0] && c.pair.remotePort <= CLOUD_UDP[1], `E: the cloud seed's port ${c.pair.remotePort} is outside --udp-ports`);
    assert.ok(c.bytes > 0, 'E: nothing flowed on the cloud seed connection');
    // The viewer's every candidate for it named the public address: the private one never left the instance.
    const cands = run.candidates.flat().filter((x) => x.includes(cloud.lanIp));
    assert.deepEqual(cands, [], `E: the cloud seed's private address was announced: ${JSON.stringify(cands)}`);
  } finally {
    await stopServer(seed);
  }
});

test('the signal server reports connection outcomes per network group', { timeout: 20_000 }, async () => {
  const r = await fetchJson(new URL('/api/admin/connections', servers.signalUrl).toString(), {
    headers: { authorization: `Bearer ${ADMIN_KEY}` },
  });
  log(`admin connections: ${JSON.stringify(r).slice(0, 600)}`);
  assert.ok(r && typeof r === 'object');
  lab.assertContained();
});
