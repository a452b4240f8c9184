// npm run bench:seed-rtc
// The seed's WebRTC data-channel throughput to one headless Chromium:
// the page opens a peer connection to the seed through the signal server,
// speaks the Shoal wire protocol (Hello, Bitfield, Request) directly, and
// pulls every piece of the sample with WINDOW requests in flight.
// Prints one JSON line. Runs inside a loopback-only namespace.
// Uses the release build of the seed (scripts/bench.sh builds it for this
// bench); SEED_BUILD=debug measures the debug build instead.
import {
  startServers, launchBrowser, listVods, fetchJson, assertIsolatedNetns, assertLoopbackCandidates, recordCandidates,
} from './lib.mjs';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { ROOT } from './lib.mjs';

const WINDOW = Number(process.env.WINDOW || 64);
// The sample is ~11 MB, under a second at line rate: every piece is asked
// for ROUNDS times, so the figure is not one burst's.
const ROUNDS = Number(process.env.ROUNDS || 4);
assertIsolatedNetns();
const SEED_BUILD = process.env.SEED_BUILD || 'release';
// UDP datagrams the kernel dropped for a full receive buffer, in this
// namespace (the bench's own: only the seed and the browser are in it).
const rcvbufErrors = () => {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
  const [names, values] = lines.map((l) => l.trim().split(/\s+/));
  return Number(values[names.indexOf('RcvbufErrors')]);
};
const servers = await startServers({ cache: path.join(ROOT, '.shoal/cache'), release: SEED_BUILD === 'release' });
let browser;
try {
  const [vod] = await listVods(servers.seedUrl);
  const manifest = await fetchJson(vod.manifestUrl);
  browser = await launchBrowser();
  const ctx = await browser.newContext();
  await recordCandidates(ctx);
  const page = await ctx.newPage();
  await page.goto(new URL('/player.html', servers.signalUrl).toString().replace('player.html', 'healthz'));
  const drops0 = rcvbufErrors();
  const result = await page.evaluate(async ({ ws: wsUrl, manifest, WINDOW, ROUNDS }) => {
    const swarm = manifest.content_id;
    const candidates = (window.__shoalCandidates = []);
    const ws = new WebSocket(wsUrl);
    const next = () => new Promise((r) => ws.addEventListener('message', (e) => r(JSON.parse(e.data)), { once: true }));
    await new Promise((r) => (ws.onopen = r));
    ws.send(JSON.stringify({ type: 'hello', role: 'viewer' }));
    await next();
    ws.send(JSON.stringify({ type: 'join', swarm }));
    const joined = await next();
    const seed = joined.peers.find((p) => p.is_seed);
    if (!seed) throw new Error('no seed in the swarm');
    const pc = new RTCPeerConnection({ iceServers: [] });
    pc.onicecandidate = (e) => {
      if (!e.candidate || !e.candidate.candidate) return;
      candidates.push(e.candidate.candidate);
      ws.send(JSON.stringify({ type: 'relay', swarm, to: seed.peer_id, signal: { kind: 'candidate', candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex } }));
    };
    const dc = pc.createDataChannel('shoal');
    dc.binaryType = 'arraybuffer';
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    ws.send(JSON.stringify({ type: 'relay', swarm, to: seed.peer_id, signal: { kind: 'offer', sdp: offer.sdp } }));
    let answer;
    while (!answer) {
      const m = await next();
      if (m.type === 'relay' && m.signal.kind === 'answer') answer = m.signal.sdp;
    }
    for (const l of answer.split('\r\n')) if (l.startsWith('a=candidate:')) candidates.push(l.slice(2));
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    await new Promise((r, j) => { dc.onopen = r; setTimeout(() => j(new Error('channel did not open in 10 s')), 10000); });
    const enc = (kind, body) => { const b = new Uint8Array(2 + body.length); b[0] = 1; b[1] = kind; b.set(body, 2); return b; };
    const u32 = (...xs) => { const b = new Uint8Array(4 * xs.length); const v = new DataView(b.buffer); xs.forEach((x, i) => v.setUint32(4 * i, x)); return b; };
    const id = new TextEncoder().encode(swarm);
    dc.send(enc(1, new Uint8Array([id.length, ...id, ...u32(manifest.segments.length)])));
    dc.send(enc(2, new Uint8Array([...u32(manifest.segments.length), ...new Uint8Array(Math.ceil(manifest.segments.length / 8))])));
    const todo = [];
    for (let r = 0; r < ROUNDS; r++) manifest.segments.forEach((s, seg) => { for (let p = 0; p < Math.ceil(s.size / manifest.piece_size); p++) todo.push([seg, p]); });
    const total = todo.length;
    let got = 0, bytes = 0, inflight = 0;
    const t0 = performance.now();
    await new Promise((resolve, reject) => {
      const pump = () => { while (inflight < WINDOW && todo.length) { const [s, p] = todo.shift(); dc.send(enc(4, u32(s, p))); inflight++; } };
      dc.onmessage = (e) => {
        const b = new Uint8Array(e.data);
        if (b[1] === 5) { got++; inflight--; bytes += b.length - 10; if (got === total) resolve(); else pump(); }
        if (b[1] === 7) reject(new Error('seed rejected a piece'));
      };
      setTimeout(() => reject(new Error(`timed out after ${got}/${total} pieces`)), 120000);
      pump();
    });
    const secs = (performance.now() - t0) / 1000;
    pc.close();
    ws.close();
    return { bytes, secs, pieces: total };
  }, { ws: servers.signalWs, manifest, WINDOW, ROUNDS });
  await assertLoopbackCandidates(page);
  const mbps = result.bytes / result.secs / 1e6;
  process.stdout.write(JSON.stringify({ mb_per_s: +mbps.toFixed(2), bytes: result.bytes, seconds: +result.secs.toFixed(2), window: WINDOW, rounds: ROUNDS, udp_rcvbuf_drops: rcvbufErrors() - drops0, seed_build: SEED_BUILD }) + '\n');
} finally {
  if (browser) await browser.close().catch(() => {});
  await servers.stop();
}
