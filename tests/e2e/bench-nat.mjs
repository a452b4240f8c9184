// `npm run bench:nat`: viewers behind NATs (tests/e2e/nat-lab.mjs), one per
// home: by default 3 homes behind port-restricted cone NATs and 1 behind a
// symmetric NAT, with the signal server handing out coturn as STUN and TURN.
// All viewers watch the sample video together; prints one JSON line:
//
//   homes, pairs (viewer pairs), pairs_connected, pairs_direct (selected
//   candidate pair not relay), pairs_relayed (through coturn), p2p_share
//   (direct peer bytes / all bytes the viewers downloaded), relay_share
//   (peer bytes that went through TURN / all), connect_ms_median (viewer
//   pairs: first RTCPeerConnection created to 'connected')
//
// Pair routes and connect times come from each browser's own getStats()
// (selected candidate pair); byte shares from the players' stats().
// Runs inside scripts/netns.sh as root (scripts/bench.sh does this).
//
//   node tests/e2e/bench-nat.mjs [--cone N] [--symmetric N] [--watch-s S] [--gap-s S]

import path from 'node:path';
import { ROOT, assertIsolatedNetns, listVods } from './lib.mjs';
import { createNatLab, runNatSwarm, startLabServers } from './nat-lab.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const cone = opt('cone', 3);
const symmetric = opt('symmetric', 1);
const watchS = opt('watch-s', 25);
const gapS = opt('gap-s', 2);
const log = (m) => process.stderr.write(`[bench-nat] ${m}\n`);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : null;
};
const sum = (xs) => xs.reduce((a, b) => a + (b || 0), 0);

assertIsolatedNetns();
const homesSpec = [...Array(cone).fill({ nat: 'cone' }), ...Array(symmetric).fill({ nat: 'symmetric' })];
const lab = await createNatLab({ homes: homesSpec, log });
let servers;
let code = 0;
try {
  const turn = await lab.startTurn();
  servers = await startLabServers({ turn, cache: path.join(ROOT, '.shoal/cache') });
  const [vod] = await listVods(servers.seedUrl);
  if (!vod) throw new Error('the seed published no video');
  const n = lab.homes.length;
  const pairs = (n * (n - 1)) / 2;
  const run = await runNatSwarm({
    servers,
    vod,
    homes: lab.homes,
    gapMs: gapS * 1000,
    minWatchMs: watchS * 1000,
    timeoutMs: (watchS + 20) * 1000,
    log,
    // Watch at least watchS; stop early once every pair has connected.
    done: ({ matched }) => matched.pairs.filter((p) => p.connected).length >= pairs,
  });
  lab.assertContained();
  const { stats, matched } = run;
  for (const p of matched.pairs) {
    log(`pair ${p.a}-${p.b} (${lab.homes[p.a].nat}/${lab.homes[p.b].nat}): ${p.connected ? `${p.route} in ${p.connectMs} ms, ${p.bytes} bytes` : 'not connected'}; pairs seen ${JSON.stringify(p.pairsSeen)}`);
  }
  stats.forEach((s, i) =>
    log(`viewer ${i} (${lab.homes[i].nat}): peers ${s.bytesFromPeers}, relay ${s.bytesFromRelay}, seed ${s.bytesFromSeed}, http ${s.bytesFromHttp}, connections ${JSON.stringify(s.connections)}, ice errors ${JSON.stringify(s.iceErrors)}${s.error ? `, error ${s.error}` : ''}`),
  );
  if (run.errors.length) log(`page errors: ${run.errors.join('; ')}`);
  const connected = matched.pairs.filter((p) => p.connected);
  const fromPeers = sum(stats.map((s) => s.bytesFromPeers));
  const fromRelay = sum(stats.map((s) => s.bytesFromRelay));
  const total = fromPeers + fromRelay + sum(stats.map((s) => s.bytesFromSeed)) + sum(stats.map((s) => s.bytesFromHttp));
  const figures = {
    homes: n,
    pairs,
    pairs_connected: connected.length,
    pairs_direct: connected.filter((p) => p.route && p.route !== 'relay').length,
    pairs_relayed: connected.filter((p) => p.route === 'relay').length,
    p2p_share: +(fromPeers / Math.max(1, total)).toFixed(4),
    relay_share: +(fromRelay / Math.max(1, total)).toFixed(4),
    connect_ms_median: connected.length ? Math.round(median(connected.map((p) => p.connectMs))) : null,
  };
  process.stdout.write(`${JSON.stringify(figures)}\n`);
} catch (e) {
  log(`failed: ${e.stack || e.message}`);
  if (servers) log(`--- server logs ---\n${servers.logs().split('\n').slice(-40).join('\n')}`);
  code = 1;
} finally {
  if (servers) await servers.stop();
  await lab.destroy();
}
process.exit(code);
