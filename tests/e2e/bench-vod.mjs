// npm run bench:vod  (VIEWERS, WATCH_S, GAP_S settable)
// Prints one JSON line of figures; progress goes to stderr.
import { runVod } from './vod-run.mjs';

const viewers = Number(process.env.VIEWERS || 4);
const watchS = Number(process.env.WATCH_S || 60);
const gapS = Number(process.env.GAP_S || 3);
const { figures } = await runVod({ viewers, watchS, gapS, log: (m) => process.stderr.write(`${m}\n`) });
process.stdout.write(JSON.stringify(figures) + '\n');
