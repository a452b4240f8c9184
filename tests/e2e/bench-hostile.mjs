// npm run bench:hostile  (VIEWERS, GAP_S, WARM_S settable)
// Honest viewers under the hostile-peer attacks of tests/e2e/hostile/.
// Prints one JSON line of figures; progress goes to stderr.
import { runHostile } from './hostile/run.mjs';

const viewers = Number(process.env.VIEWERS || 5);
const gapS = Number(process.env.GAP_S || 3);
const warmS = Number(process.env.WARM_S || 20);
const log = (m) => process.stderr.write(`${m}\n`);
const r = await runHostile({ viewers, gapS, warmS, log });
for (const v of r.perViewer) log(`viewer ${v.viewer}: ${JSON.stringify(v)}`);
for (const a of r.attacks) log(`attack: ${JSON.stringify({ ...a, identities: undefined })}`);
for (const a of r.attacks.filter((a) => a.misbehaves)) log(`${a.name}: ${a.peerId} dropped by viewers ${JSON.stringify(a.droppedBy)}: ${JSON.stringify(a.dropReasons)}`);
for (const n of r.notes) log(`note: ${n}`);
log(`seed bytes served per 10 s of attacks: ${JSON.stringify(r.seedWindows.map((w) => w.delta))}`);
log(`seed at the end: ${JSON.stringify(r.seedLast)}`);
for (const e of [...r.errors, ...r.attackerErrors]) log(`error: ${e}`);
process.stdout.write(JSON.stringify(r.figures) + '\n');
