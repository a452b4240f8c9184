// npm run bench:live  (VIEWERS, WATCH_S, SEGMENT seconds, GAP_S settable)
// Prints one JSON line of figures; progress goes to stderr.
import { runLive } from './live-run.mjs';

const viewers = Number(process.env.VIEWERS || 6);
const watchS = Number(process.env.WATCH_S || 60);
const segmentS = Number(process.env.SEGMENT || 1);
const gapS = Number(process.env.GAP_S || 2);
const { figures, perViewer, errors, consoleErrors } = await runLive({
  viewers,
  watchS,
  gapS,
  segmentMs: Math.round(segmentS * 1000),
  log: (m) => process.stderr.write(`${m}\n`),
});
for (const e of [...errors, ...consoleErrors.slice(-20)]) process.stderr.write(`${e}\n`);
process.stderr.write(`figures: ${JSON.stringify(figures)}\nviewers: ${JSON.stringify(perViewer)}\n`);
const keys = ['viewers', 'segment_s', 'p2p_share', 'seed_egress_copies', 'latency_ms_median', 'latency_ms_max',
  'startup_ms_median', 'stalls', 'stalled_ms', 'bundle_gz_bytes'];
process.stdout.write(JSON.stringify(Object.fromEntries(keys.map((k) => [k, figures[k]]))) + '\n');
