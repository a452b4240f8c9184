// End to end: a hostile peer attacks a swarm of honest viewers.
// Real signal server, real seed, real headless Chromium viewers; the
// attacker is a Chromium page speaking the real signaling, WebRTC and wire
// protocols (tests/e2e/hostile/attacker-page.js): corrupt pieces, unsolicited
// pieces, false claims, a reject flood, text and 1 MiB messages, and offers
// from 200 fresh peer ids. Honest viewers must play on, blame only the
// attacker and keep every table within its bound.

import test from 'node:test';
import assert from 'node:assert/strict';
import { runHostile, BOUNDS, ATTACKS } from './hostile/run.mjs';

const log = (m) => process.stderr.write(`  ${m}\n`);

test('honest viewers play on through seven attacks and drop only the attacker', { timeout: 330_000 }, async () => {
  const r = await runHostile({ viewers: 5, gapS: 3, warmS: 20, log });
  log(`figures: ${JSON.stringify(r.figures)}`);
  for (const v of r.perViewer) log(`viewer ${v.viewer}: ${JSON.stringify(v)}`);
  for (const a of r.attacks.filter((a) => a.misbehaves)) log(`${a.name}: ${a.peerId} dropped by viewers ${JSON.stringify(a.droppedBy)}: ${JSON.stringify(a.dropReasons)}`);
  for (const n of r.notes) log(`note: ${n}`);
  log(`seed windows: ${JSON.stringify(r.seedWindows.map((w) => w.delta))}`);

  assert.deepEqual(r.errors, [], 'honest viewers had page errors');
  assert.deepEqual(r.attackerErrors, [], 'the attacker page had errors (a bug of the test)');

  // Every attack ran, and those that talk on the data channel reached someone.
  assert.equal(r.figures.attacks, ATTACKS.length, `attacks: ${JSON.stringify(r.attacks.filter((a) => a.error || a.skipped))}`);
  for (const a of r.attacks.filter((a) => a.name !== 'offer_flood')) {
    assert.ok(a.reached.length > 0, `attack ${a.name} reached no honest viewer: ${JSON.stringify(a.dialErrors)}`);
  }
  const flood = r.attacks.find((a) => a.name === 'offer_flood');
  assert.ok(flood.sockets >= 150, `offer flood opened only ${flood.sockets} identities: ${JSON.stringify(flood.openErrors)}`);

  for (const v of r.perViewer) {
    const who = `viewer ${v.viewer}`;
    assert.deepEqual(v.errorsSeen, [], `${who} had a fatal error`);
    assert.ok(v.playRatio >= BOUNDS.minPlayRatio, `${who} played ${v.currentTime} s in ${v.wallS} s`);
    if (v.perStallFromPlayer) {
      for (const d of v.stallDurationsMs) assert.ok(d <= BOUNDS.maxStallMs, `${who}: a stall of ${d} ms`);
    } else {
      assert.ok(v.stalledMs <= BOUNDS.maxStallMs, `${who}: stalled ${v.stalledMs} ms in ${v.stalls} stalls`);
    }
    assert.ok(v.peerConnectionsMax <= BOUNDS.maxPeers + BOUNDS.peerMargin, `${who}: ${v.peerConnectionsMax} peer connections`);
    assert.deepEqual(v.tableViolations, [], `${who}: tables over their bounds`);
    if (v.tablesMax) {
      assert.ok(v.tablesMax.banned <= BOUNDS.maxBanned, `${who}: banned ${v.tablesMax.banned}`);
      assert.ok(v.tablesMax.suspects <= BOUNDS.maxSuspects, `${who}: suspects ${v.tablesMax.suspects}`);
    }
  }

  // Blame is exact: no honest peer was dropped, every misbehaving attacker was.
  assert.deepEqual(r.honestDrops, [], 'honest peers were dropped');
  for (const a of r.attacks.filter((a) => a.misbehaves)) {
    assert.ok(a.dropped, `attacker ${a.peerId} (${a.name}) was not dropped by any of the ${a.reached.length} viewers it reached`);
  }
  assert.equal(r.figures.attacker_dropped, true);

  // The seed kept serving while under attack.
  assert.ok(r.seedWindows.length > 0);
  r.seedWindows.forEach((w, i) => assert.ok(w.delta > 0, `the seed served nothing in window ${i} of the attacks (${w.to - w.from} ms)`));
});
