// One hostile-peer run, shared by the end-to-end test (hostile.test.mjs) and
// the benchmark (bench-hostile.mjs).
//
// Starts the real signal server and seed on the sample video, opens N honest
// headless Chromium viewers a few seconds apart on the embed page, lets them
// play, then runs the attacks of attacker-page.js one after the other from an
// attacker page in its own browser context (each attack under a fresh
// signaling identity), polling every viewer's player.stats() and the seed's
// /api/stats once a second throughout. Returns the figures, the per-viewer
// and per-attack records and the results of the checks the test asserts.
//
// Must run inside a loopback-only network namespace (scripts/netns.sh).

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as lib from '../lib.mjs';

const {
  ROOT, startServers, launchBrowser, listVods, fetchJson, sleep, waitFor, withTimeout,
  assertIsolatedNetns, assertLoopbackCandidates, recordCandidates,
} = lib;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ATTACKER_JS = path.join(HERE, 'attacker-page.js');

/** Engine bounds the checks hold the viewers to (swarm-proto engine Config defaults). */
export const BOUNDS = {
  maxPeers: 20,
  peerMargin: 4,
  rejectsPerPeer: 64,
  maxBanned: 1024,
  maxSuspects: 8,
  maxStallMs: 1000,
  minPlayRatio: 0.8,
};

/**
 * The attacks, in the order they run: [name, Hostile function, options,
 * node-side time budget in ms]. Each runs under a fresh peer id, and takes
 * at least SLOT_MS (the run waits out the rest), so that the attacks span
 * about 75 s and each one's aftermath shows in the viewers' playback.
 */
export const SLOT_MS = 10_000;
export const ATTACKS = [
  ['corrupt_pieces', 'corruptPieces', { durationMs: 20_000 }, 40_000],
  ['unsolicited_pieces', 'unsolicitedPieces', { durationMs: 6000 }, 35_000],
  ['false_claims', 'falseClaims', { durationMs: 25_000 }, 45_000],
  ['reject_flood', 'rejectFlood', { durationMs: 6000 }, 30_000],
  ['text_messages', 'textMessages', { durationMs: 6000 }, 30_000],
  ['huge_messages', 'hugeMessages', { durationMs: 6000 }, 30_000],
  ['offer_flood', 'offerFlood', { count: 200, holdMs: 8000 }, 60_000],
];

// --------------------------------------------------------------- helpers

const TABLE_KEYS = ['peers', 'partialSegments', 'storedSegments', 'storedBytes', 'rejects', 'banned', 'pendingLoads', 'suspects'];
const camel = (k) => k.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

/** The stats fields this run uses, with snake_case tables keys accepted. */
function pickStats(s) {
  if (!s || typeof s !== 'object') return { error: 'no stats' };
  let tables = null;
  if (s.tables && typeof s.tables === 'object') {
    tables = {};
    for (const [k, v] of Object.entries(s.tables)) tables[camel(k)] = Number(v);
  }
  return {
    currentTime: Number(s.currentTime) || 0,
    stalls: Number(s.stalls) || 0,
    stalledMs: Number(s.stalledMs) || 0,
    stallDurations: Array.isArray(s.stallDurations) ? s.stallDurations.map(Number) : null,
    peers: s.peers ?? null,
    peerConnections: s.peerConnections ?? null,
    tables,
    wasmMemoryBytes: s.wasmMemoryBytes ?? null,
    peersDropped: Number(s.peersDropped) || 0,
    droppedPeers: Array.isArray(s.droppedPeers) ? s.droppedPeers.map(String) : null,
    peerId: s.peerId ?? null,
    error: s.error ?? null,
    verifyFailures: Number(s.verifyFailures) || 0,
    requestsRejected: Number(s.requestsRejected) || 0,
    unsolicitedPieces: Number(s.unsolicitedPieces) || 0,
    bytesFromPeers: Number(s.bytesFromPeers) || 0,
  };
}

/** Start time (ms) of each segment of a manifest, and the segment at a time. */
function timeline(manifest) {
  const starts = [];
  let t = 0;
  for (const s of manifest.segments) {
    starts.push(t);
    t += s.duration_ms;
  }
  const segAt = (ms) => {
    let i = 0;
    while (i + 1 < starts.length && starts[i + 1] <= ms) i++;
    return i;
  };
  return { starts, segAt, durationMs: t };
}

/**
 * Duration of each stall, from 1 s polls of (stalls, stalledMs): the stalled
 * time added while the counter stayed at k belongs to stall k (two stalls
 * inside one poll interval count as one).
 */
function stallDurations(samples) {
  const out = [];
  let prevCount = 0;
  let base = 0;
  let last = 0;
  for (const s of samples) {
    if (s.stalls !== prevCount) {
      if (prevCount > 0) out.push(last - base);
      base = last;
      prevCount = s.stalls;
    }
    last = s.stalledMs;
  }
  if (prevCount > 0) out.push(last - base);
  return out;
}

// ------------------------------------------------------------------- run

/**
 * options: viewers (5), gapS (3, between viewer joins), warmS (20: play
 * before the attacks), tailS (8: after them), attacks (names to run, default
 * all), log (function).
 */
export async function runHostile({ viewers = 5, gapS = 3, warmS = 20, tailS = 8, attacks: only = null, log = () => {} } = {}) {
  assertIsolatedNetns();
  const hardDeadline = Date.now() + 280_000;
  // Every viewer and attacker identity connects from 127.0.0.1 here, so the
  // signal server's per-address connection limit (64) would cut the offer
  // flood short; it is lifted to test the peers and the seed against the
  // full flood (the limit itself is tested in signal-server/tests/abuse.rs).
  const servers = await startServers({
    cache: path.join(ROOT, '.shoal/cache'),
    signalArgs: ['--max-conns-per-addr', '0'],
  });
  let browser;
  let stopPolling = true;
  let poller = null;
  try {
    const [vod] = await listVods(servers.seedUrl);
    if (!vod) throw new Error('the seed published no video');
    const manifest = await fetchJson(vod.manifestUrl);
    const contentId = vod.contentId ?? manifest.content_id;
    const tl = timeline(manifest);
    log(`video ${contentId}: ${manifest.segments.length} segments, ${tl.durationMs} ms, pieces of ${manifest.piece_size} B`);
    browser = await launchBrowser();

    // ---- honest viewers
    const pages = [];
    const joinedAt = [];
    const errors = [];
    const series = [];
    // "[shoal] dropping peer <id>: <reason>" lines of each viewer's console.
    const dropLogs = [];
    for (let i = 0; i < viewers; i++) {
      if (i > 0) await sleep(gapS * 1000);
      const ctx = await browser.newContext();
      await recordCandidates(ctx);
      const page = await ctx.newPage();
      page.on('pageerror', (e) => errors.push(`viewer ${i}: page error: ${e.message}`));
      dropLogs.push([]);
      page.on('console', (m) => {
        const text = m.text();
        const d = text.match(/dropping peer (\S+): (.*)$/);
        if (d && dropLogs[i].length < 500) dropLogs[i].push({ t: Date.now(), id: d[1], reason: d[2] });
        if (process.env.SHOAL_E2E_LOG) process.stderr.write(`viewer ${i}: ${text}\n`);
      });
      const u = new URL('/player.html', servers.signalUrl);
      u.searchParams.set('src', vod.manifestUrl);
      u.searchParams.set('signal', servers.signalWs);
      joinedAt.push(Date.now());
      await page.goto(u.toString());
      pages.push(page);
      series.push([]);
      log(`viewer ${i} joined`);
    }

    // ---- 1 s polls of every viewer and of the seed
    const seedSeries = [];
    const pollOnce = async () => {
      const t = Date.now();
      await Promise.all([
        ...pages.map(async (p, i) => {
          try {
            const raw = await withTimeout(
              p.evaluate(() => {
                if (!window.player) return { error: window.shoalError || null, notStarted: true };
                return JSON.parse(JSON.stringify(window.player.stats()));
              }),
              4000,
              `stats of viewer ${i}`,
            );
            if (raw.notStarted) {
              series[i].push({ t, notStarted: true, error: raw.error });
            } else {
              series[i].push({ t, ...pickStats(raw) });
            }
          } catch (e) {
            series[i].push({ t, pollError: e.message });
          }
        }),
        (async () => {
          try {
            const s = await fetchJson(new URL('/api/stats', servers.seedUrl).toString(), { timeoutMs: 3000 });
            seedSeries.push({ t, bytes: (s.http_bytes_served || 0) + (s.rtc_bytes_served || 0), ...s });
          } catch (e) {
            seedSeries.push({ t, pollError: e.message });
          }
        })(),
      ]);
    };
    stopPolling = false;
    poller = (async () => {
      while (!stopPolling && Date.now() < hardDeadline) {
        const t0 = Date.now();
        await pollOnce();
        await sleep(Math.max(50, 1000 - (Date.now() - t0)));
      }
    })();

    // ---- the attacker's page: its own context, on the signal server's origin
    const actx = await browser.newContext();
    await recordCandidates(actx);
    const attacker = await actx.newPage();
    const attackerErrors = [];
    attacker.on('pageerror', (e) => attackerErrors.push(`attacker: page error: ${e.message}`));
    attacker.on('console', (m) => {
      const text = m.text();
      if (text.startsWith('[hostile]') || process.env.SHOAL_E2E_LOG) log(`attacker: ${text}`);
    });
    // A real page of the signal server (not a Playwright-fulfilled one:
    // Chromium counts those as public and blocks their fetches to loopback).
    await attacker.goto(new URL('/healthz', servers.signalUrl).toString());
    await attacker.addScriptTag({ content: readFileSync(ATTACKER_JS, 'utf8') });
    await attacker.evaluate((u) => window.Hostile.loadManifest(u), vod.manifestUrl);

    // ---- let the viewers play
    const last = (i) => series[i][series[i].length - 1] || {};
    await waitFor(
      () =>
        Date.now() >= joinedAt[0] + warmS * 1000 &&
        Date.now() >= joinedAt[viewers - 1] + Math.min(warmS, 10) * 1000 &&
        pages.every((_, i) => last(i).peerId && last(i).currentTime > 0),
      { timeoutMs: warmS * 1000 + 60_000, intervalMs: 250, what: 'honest viewers playing' },
    );
    const playheads = pages.map((_, i) => last(i).currentTime * 1000);
    const from = tl.segAt(Math.min(...playheads));
    const to = tl.segAt(Math.max(...playheads) + 75_000) + 1;
    const pre = await attacker.evaluate(([a, b]) => window.Hostile.prefetch(a, b), [from, to]);
    log(`attacker holds segments ${from}..${to - 1} (${pre.bytes} bytes fetched over HTTP)`);

    // Honest ids: the viewers' peer ids and the seed's (from /api/swarms,
    // or from the swarm's peer list as a fresh identity sees it).
    const viewerIds = () => pages.map((_, i) => last(i).peerId).filter(Boolean);
    let seedIds = [];
    try {
      const sw = await fetchJson(new URL('/api/swarms', servers.signalUrl).toString(), { timeoutMs: 3000 });
      for (const s of sw.swarms || []) {
        if (s.swarm !== contentId) continue;
        for (const p of s.peers || []) if (p.role === 'seed') seedIds.push(p.peer_id);
      }
    } catch (e) {
      log(`GET /api/swarms failed (${e.message}); using the joined list`);
    }
    if (!seedIds.length) {
      seedIds = await attacker.evaluate(async ([ws, swarm]) => {
        const s = new window.Hostile.Signal(ws, swarm);
        await s.open();
        const ids = s.joined.peers.filter((p) => p.is_seed).map((p) => p.peer_id);
        s.close();
        return ids;
      }, [servers.signalWs, contentId]);
    }
    log(`honest viewers ${viewerIds().join(', ')}; seed ${seedIds.join(', ') || '(not found)'}`);

    // ---- the attacks
    const attackRecords = [];
    // A fresh seed sample as the baseline (the attacker's own HTTP fetches
    // above are not the seed serving the swarm).
    await sleep(200);
    const attacksStart = Date.now();
    try {
      const s = await fetchJson(new URL('/api/stats', servers.seedUrl).toString(), { timeoutMs: 3000 });
      seedSeries.push({ t: attacksStart, bytes: (s.http_bytes_served || 0) + (s.rtc_bytes_served || 0), ...s });
    } catch {}
    for (const [name, fn, opts, budget] of ATTACKS) {
      if (only && !only.includes(name)) continue;
      if (Date.now() + budget > hardDeadline - 20_000) {
        attackRecords.push({ name, skipped: 'out of time' });
        log(`attack ${name}: skipped (out of time)`);
        continue;
      }
      const env = { signalWs: servers.signalWs, swarm: contentId, victims: viewerIds(), seeds: seedIds };
      const startedAt = Date.now();
      log(`attack ${name}: start (${env.victims.length} victims)`);
      let rec;
      try {
        rec = await withTimeout(attacker.evaluate(([f, e, o]) => window.Hostile[f](e, o), [fn, env, opts]), budget, `attack ${name}`);
      } catch (e) {
        rec = { name, error: e.message };
      }
      rec.startedAt = startedAt;
      rec.endedAt = Date.now();
      attackRecords.push(rec);
      const brief = { ...rec };
      delete brief.identities;
      log(`attack ${name}: ${JSON.stringify(brief)}`);
      const rest = startedAt + SLOT_MS - Date.now();
      if (rest > 0) await sleep(Math.min(rest, Math.max(0, hardDeadline - Date.now() - 30_000)));
    }
    const attacksEnd = Date.now();
    await attacker.evaluate(() => window.Hostile.closeAll()).catch(() => {});
    await sleep(Math.max(0, Math.min(tailS * 1000, hardDeadline - Date.now() - 15_000)));
    stopPolling = true;
    await poller;
    poller = null;
    await pollOnce();

    // Every ICE candidate, the attacker's included, must be loopback.
    const candidates = [];
    for (const p of pages) candidates.push(...(await assertLoopbackCandidates(p)));
    candidates.push(...(await assertLoopbackCandidates(attacker)));
    await browser.close();
    browser = null;

    return analyse({
      manifest, joinedAt, series, dropLogs, seedSeries, attackRecords, attacksStart, attacksEnd,
      seedIds, errors, attackerErrors, candidates, servers, viewers,
    });
  } catch (e) {
    e.message += `\n--- server logs ---\n${servers.logs().split('\n').slice(-60).join('\n')}`;
    throw e;
  } finally {
    stopPolling = true;
    if (poller) await poller.catch(() => {});
    if (browser) await browser.close().catch(() => {});
    await servers.stop();
  }
}

// -------------------------------------------------------------- analysis

function analyse({ joinedAt, series, dropLogs, seedSeries, attackRecords, attacksStart, attacksEnd, seedIds, errors, attackerErrors, candidates, viewers }) {
  const notes = [];
  const perViewer = series.map((samples, i) => {
    const ok = samples.filter((s) => !s.pollError && !s.notStarted);
    const lastS = ok[ok.length - 1] || {};
    const wallS = ((lastS.t ?? joinedAt[i]) - joinedAt[i]) / 1000;
    const ids = [...new Set(ok.map((s) => s.peerId).filter(Boolean))];
    const dropKey = ok.some((s) => s.droppedPeers);
    // droppedPeers from the stats (union over every poll: the player keeps
    // the most recent 64); without that key, the console's drop lines.
    const dropped = new Set(dropKey ? ok.flatMap((s) => s.droppedPeers || []) : dropLogs[i].map((d) => d.id));
    const tablesMax = {};
    const tableViolations = [];
    let pcMax = 0;
    let pcKey = 'peerConnections';
    for (const s of ok) {
      const pc = s.peerConnections ?? s.peers;
      if (s.peerConnections == null) pcKey = 'peers';
      pcMax = Math.max(pcMax, Number(pc) || 0);
      if (s.tables) {
        for (const k of TABLE_KEYS) if (s.tables[k] != null) tablesMax[k] = Math.max(tablesMax[k] ?? 0, s.tables[k]);
        const t = s.tables;
        const at = Math.round((s.t - joinedAt[i]) / 1000);
        if (t.rejects > BOUNDS.rejectsPerPeer * Math.max(1, t.peers)) tableViolations.push(`${at}s: rejects ${t.rejects} > ${BOUNDS.rejectsPerPeer} x ${t.peers} peers`);
        if (t.banned > BOUNDS.maxBanned) tableViolations.push(`${at}s: banned ${t.banned}`);
        if (t.suspects > BOUNDS.maxSuspects) tableViolations.push(`${at}s: suspects ${t.suspects}`);
        if (t.peers > BOUNDS.maxPeers) tableViolations.push(`${at}s: peers ${t.peers}`);
      }
    }
    const perStall = ok.some((s) => s.stallDurations) ? lastS.stallDurations || [] : stallDurations(ok);
    return {
      viewer: i,
      peerIds: ids,
      samples: samples.length,
      pollErrors: samples.filter((s) => s.pollError).length,
      wallS: +wallS.toFixed(1),
      currentTime: +(lastS.currentTime ?? 0).toFixed(1),
      playRatio: wallS > 0 ? +((lastS.currentTime ?? 0) / wallS).toFixed(3) : 0,
      stalls: lastS.stalls ?? 0,
      stalledMs: Math.round(lastS.stalledMs ?? 0),
      stallDurationsMs: perStall.map(Math.round),
      perStallFromPlayer: ok.some((s) => s.stallDurations),
      peerConnectionsMax: pcMax,
      peerConnectionsKey: pcKey,
      tablesMax: ok.some((s) => s.tables) ? tablesMax : null,
      tableViolations,
      wasmMemoryBytesMax: Math.max(0, ...ok.map((s) => Number(s.wasmMemoryBytes) || 0)),
      peersDropped: lastS.peersDropped ?? 0,
      droppedPeersKey: dropKey,
      droppedPeers: [...dropped],
      dropReasons: dropLogs[i],
      verifyFailures: lastS.verifyFailures ?? 0,
      requestsRejected: lastS.requestsRejected ?? 0,
      unsolicitedPieces: lastS.unsolicitedPieces ?? 0,
      errorsSeen: [...new Set(samples.map((s) => s.error).filter(Boolean))],
    };
  });

  const dropKey = perViewer.every((v) => v.droppedPeersKey);
  if (!dropKey) notes.push('player.stats() has no droppedPeers: dropped peer ids are taken from the viewers\' console lines "[shoal] dropping peer <id>: <reason>"');
  const honestIds = new Set([...perViewer.flatMap((v) => v.peerIds), ...seedIds]);
  const honestDrops = [];
  for (const v of perViewer) for (const id of v.droppedPeers) if (honestIds.has(id)) honestDrops.push({ viewer: v.viewer, dropped: id });
  const viewerById = new Map();
  for (const v of perViewer) for (const id of v.peerIds) viewerById.set(id, v);

  // Was each misbehaving attacker identity dropped by a viewer it reached?
  const misbehaving = attackRecords.filter((a) => !a.error && !a.skipped && a.misbehaves);
  for (const a of misbehaving) {
    const reached = (a.reached || []).map((id) => viewerById.get(id)).filter(Boolean);
    a.droppedBy = reached.filter((v) => v.droppedPeers.includes(a.peerId)).map((v) => v.viewer);
    a.dropped = a.droppedBy.length > 0;
    a.dropReasons = [...new Set(perViewer.flatMap((v) => v.dropReasons.filter((d) => d.id === a.peerId).map((d) => d.reason)))].slice(0, 6);
  }
  const attackerDropped = misbehaving.length > 0 && misbehaving.every((a) => a.dropped);

  // The seed keeps serving during the attacks: bytes up in every 10 s window.
  const seedOk = seedSeries.filter((s) => !s.pollError).sort((a, b) => a.t - b.t);
  const bytesAt = (t) => seedOk.filter((s) => s.t <= t).pop()?.bytes ?? 0;
  const seedWindows = [];
  for (let t = attacksStart; t < attacksEnd; t += 10_000) {
    const end = Math.min(t + 10_000, attacksEnd);
    if (end - t < 5000 && seedWindows.length) {
      seedWindows[seedWindows.length - 1].to = end;
      seedWindows[seedWindows.length - 1].delta = bytesAt(end) - bytesAt(seedWindows[seedWindows.length - 1].from);
      continue;
    }
    seedWindows.push({ from: t, to: end, delta: bytesAt(end) - bytesAt(t) });
  }
  const slotsKey = seedOk.some((s) => s.slots_max != null);
  if (!slotsKey) notes.push('seed /api/stats has no slots_max: seed_slots_max is the most viewers_connected seen');
  const seedSlotsMax = Math.max(0, ...seedOk.map((s) => Number(slotsKey ? s.slots_max : s.viewers_connected) || 0));
  if (perViewer.some((v) => v.peerConnectionsKey !== 'peerConnections')) notes.push('player.stats() has no peerConnections: open data channels (peers) counted instead');
  if (perViewer.some((v) => !v.tablesMax)) notes.push('player.stats() has no tables');
  if (perViewer.some((v) => !v.perStallFromPlayer)) notes.push('per-stall durations derived from 1 s polls of stalls/stalledMs');

  const ran = attackRecords.filter((a) => !a.error && !a.skipped);
  const figures = {
    attacks: ran.length,
    honest_viewers: viewers,
    honest_stalls: perViewer.reduce((a, v) => a + v.stalls, 0),
    honest_stalled_ms: perViewer.reduce((a, v) => a + v.stalledMs, 0),
    honest_dropped: honestDrops.length,
    attacker_dropped: attackerDropped,
    max_peer_connections: Math.max(0, ...perViewer.map((v) => v.peerConnectionsMax)),
    wasm_memory_mb_max: +(Math.max(0, ...perViewer.map((v) => v.wasmMemoryBytesMax)) / (1 << 20)).toFixed(1),
    seed_slots_max: seedOk.length ? seedSlotsMax : null,
  };
  for (const v of perViewer) {
    v.dropReasons = v.dropReasons.map((d) => `${d.id}: ${d.reason}`).slice(0, 40);
  }
  return {
    figures,
    perViewer,
    attacks: attackRecords,
    honestDrops,
    seedWindows,
    seedLast: seedOk[seedOk.length - 1] || null,
    errors,
    attackerErrors,
    candidates: candidates.length,
    notes,
  };
}
