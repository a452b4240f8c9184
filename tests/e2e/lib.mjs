// Helpers for Shoal's end-to-end tests and benchmarks: start the real
// servers, launch headless Chromium, check that WebRTC stayed on loopback.
//
// Every test that opens a WebRTC connection runs inside a network namespace
// with only `lo` (scripts/netns.sh; `npm test` does this), and calls
// assertLoopbackCandidates(page) on each viewer page it opened.

import { spawn } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const TARGET_DIR = path.resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target');
export const SAMPLE_MEDIA_DIR = path.join(ROOT, '.shoal/media');
export const SAMPLE_FILE = path.join(SAMPLE_MEDIA_DIR, 'sample.mp4');
export const WEB_DIR = path.join(ROOT, 'web-demo');
export const PKG_DIR = path.join(ROOT, 'web-demo/pkg');
export const CHROMIUM = '/usr/bin/chromium';

// ---------------------------------------------------------------------------
// small utilities

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects with `what timed out after N ms` if `promise` takes longer than `ms`. */
export async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `fn` until it returns a truthy value (which is returned) or `ms` pass. */
export async function waitFor(fn, { timeoutMs = 30_000, intervalMs = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what} not reached within ${timeoutMs} ms${lastErr ? `: ${lastErr.message}` : ''}`);
    }
    await sleep(intervalMs);
  }
}

/** fetch() bounded in time; throws unless the status is 2xx. */
export async function fetchOk(url, { timeoutMs = 15_000, ...init } = {}) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) {
    const body = await res.text().catch(() => '');
    throw new Error(`GET ${url}: HTTP ${res.status} ${body.slice(0, 300)}`);
  }
  return res;
}

export async function fetchJson(url, opts) {
  const res = await fetchOk(url, opts);
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`GET ${url}: not JSON (${e.message}): ${text.slice(0, 300)}`);
  }
}

export async function fetchBytes(url, opts) {
  const res = await fetchOk(url, opts);
  return Buffer.from(await res.arrayBuffer());
}

export const sha256Hex = (buf) => createHash('sha256').update(buf).digest('hex');

/** A JSON Web Token signed with HMAC-SHA256 (what a website's backend issues to its viewers). */
export function hs256Token(key, claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', key).update(body).digest('base64url')}`;
}

/** Size in bytes of `file` compressed with gzip -9. */
export function gzipSize(file) {
  return zlib.gzipSync(readFileSync(file), { level: 9 }).length;
}

/**
 * Gzipped size (-9) of a player bundle as a page loads it: the Wasm, its
 * wasm-bindgen glue and the shoal.js loader. `name` is shoal_peer (on
 * demand) or shoal_peer_live (live channels).
 */
export function bundleGzBytes(name = 'shoal_peer') {
  return [`${name}_bg.wasm`, `${name}.js`, 'shoal.js']
    .map((f) => gzipSize(path.join(PKG_DIR, f)))
    .reduce((a, b) => a + b, 0);
}

/** A fresh temporary directory (under $TMPDIR, which `npm test` makes per run). */
export function tempDir(prefix = 'shoal-') {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

// ---------------------------------------------------------------------------
// servers

const liveChildren = new Set();
process.on('exit', () => {
  for (const c of liveChildren) {
    try {
      c.kill('SIGKILL');
    } catch {}
  }
});

/**
 * Spawns a binary and resolves once it prints `<marker> <url>` on stdout.
 * Keeps the last lines of its output for error messages.
 */
export function spawnServer(name, bin, args, { env = {}, marker, timeoutMs }) {
  if (!existsSync(bin)) {
    throw new Error(`${bin} does not exist: build it first (cargo build --workspace)`);
  }
  const child = spawn(bin, args, {
    cwd: ROOT,
    env: { RUST_LOG: 'info', ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveChildren.add(child);
  const tail = [];
  const verbose = !!process.env.SHOAL_E2E_LOG;
  const keep = (stream, line) => {
    tail.push(`${name}[${stream}]: ${line}`);
    if (tail.length > 200) tail.shift();
    if (verbose) process.stderr.write(`${name}[${stream}]: ${line}\n`);
  };
  const server = {
    name,
    child,
    url: null,
    exited: null,
    logs: () => tail.join('\n'),
  };
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      liveChildren.delete(child);
      server.exited = { code, signal };
      resolve(server.exited);
    });
  });
  server.exitedPromise = exited;
  const ready = new Promise((resolve, reject) => {
    child.on('error', (e) => reject(new Error(`${name}: cannot start ${bin}: ${e.message}`)));
    readline.createInterface({ input: child.stderr }).on('line', (l) => keep('err', l));
    readline.createInterface({ input: child.stdout }).on('line', (l) => {
      keep('out', l);
      const m = l.match(new RegExp(`^${marker}\\s+(\\S+)`));
      if (m && !server.url) {
        server.url = m[1].replace(/\/+$/, '');
        resolve(server.url);
      }
    });
    exited.then(({ code, signal }) =>
      reject(
        new Error(
          `${name} exited (code ${code}, signal ${signal}) before printing ${marker}\n--- last output ---\n${server.logs()}`,
        ),
      ),
    );
  });
  server.ready = withTimeout(ready, timeoutMs, `${name}: waiting for ${marker}`).catch(async (e) => {
    await stopServer(server);
    if (!/last output/.test(e.message)) e.message += `\n--- last output ---\n${server.logs()}`;
    throw e;
  });
  return server;
}

export async function stopServer(server) {
  if (!server || server.exited) return;
  server.child.kill('SIGTERM');
  const done = await Promise.race([server.exitedPromise, sleep(5_000).then(() => null)]);
  if (!done) {
    server.child.kill('SIGKILL');
    await Promise.race([server.exitedPromise, sleep(2_000)]);
  }
}

/** The signal server's WebSocket URL for a base URL such as http://127.0.0.1:1234. */
export function signalWsUrl(signalUrl) {
  const u = new URL(signalUrl);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.pathname = '/ws';
  return u.toString();
}

/**
 * Starts the debug builds of shoal-signal and shoal-seed on 127.0.0.1 with
 * OS-chosen ports and waits for their SHOAL_*_LISTENING lines.
 *
 * options: media (dir, default .shoal/media), cache (dir, default a fresh temp
 * dir), signalArgs / seedArgs (extra CLI flags), env (extra environment),
 * timeoutMs (seed readiness, default 120 s: the seed packages the media first),
 * seed: false to start the signal server alone, host (the IPv4 address both
 * servers listen on and the seed's WebRTC sockets bind, default 127.0.0.1;
 * the NAT lab's public address in nat.test.mjs).
 *
 * Returns { signalUrl, signalWs, seedUrl, signal, seed, logs(), stop() }.
 */
export async function startServers({
  media = SAMPLE_MEDIA_DIR,
  cache,
  signalArgs = [],
  seedArgs = [],
  env = {},
  timeoutMs = 120_000,
  seed: withSeed = true,
  // Run the seed from the release build (benchmarks; `cargo build --release -p shoal-seed`
  // first). The default, and every e2e test, uses the debug build.
  release = false,
  host = '127.0.0.1',
} = {}) {
  const listen = `${host}:0`;
  // The seed's WebRTC sockets bind its --rtc-ip (default 127.0.0.1).
  const rtcArgs = host === '127.0.0.1' ? [] : ['--rtc-ip', host];
  cache ??= await tempDir('shoal-cache-');
  // Seeds sign their own credential with the signal server's seed key (one
  // random key per run), as an operator running both would.
  env = { SHOAL_SEED_KEY: randomBytes(32).toString('hex'), ...env };
  const seedBin = path.join(TARGET_DIR, release ? 'release' : 'debug', 'shoal-seed');
  const signal = spawnServer(
    'signal',
    path.join(TARGET_DIR, 'debug', 'shoal-signal'),
    ['--listen', listen, '--web-dir', WEB_DIR, '--pkg-dir', PKG_DIR, ...signalArgs],
    { env, marker: 'SHOAL_SIGNAL_LISTENING', timeoutMs: 30_000 },
  );
  const signalUrl = await signal.ready;
  const signalWs = signalWsUrl(signalUrl);
  let seed = null;
  let seedUrl = null;
  if (withSeed) {
    try {
      seed = spawnServer(
        'seed',
        seedBin,
        ['--media', media, '--cache', cache, '--listen', listen, ...rtcArgs, '--signal', signalWs, ...seedArgs],
        { env, marker: 'SHOAL_SEED_LISTENING', timeoutMs },
      );
      seedUrl = await seed.ready;
    } catch (e) {
      await stopServer(signal);
      throw e;
    }
  }
  const extraSeeds = [];
  const servers = {
    signalUrl,
    signalWs,
    seedUrl,
    signal,
    seed,
    cache,
    logs: () => [servers.signal.logs(), seed?.logs() ?? '', ...extraSeeds.map((x) => x.logs())].join('\n'),
    /** Starts one more seed on the same signal server; resolves to it ({ url, logs() }). */
    addSeed: async ({ cache: seedCache = cache, args = seedArgs } = {}) => {
      const s = spawnServer(
        `seed${extraSeeds.length + 2}`,
        seedBin,
        ['--media', media, '--cache', seedCache, '--listen', listen, ...rtcArgs, '--signal', signalWs, ...args],
        { env, marker: 'SHOAL_SEED_LISTENING', timeoutMs },
      );
      extraSeeds.push(s);
      await s.ready;
      return s;
    },
    /** Kills the first seed at once (SIGKILL), as a crash would. */
    killSeed: async () => {
      if (seed && !seed.exited) {
        seed.child.kill('SIGKILL');
        await Promise.race([seed.exitedPromise, sleep(5_000)]);
      }
    },
    /** Stops the signal server and starts a new one on the same address. */
    restartSignal: async () => {
      await stopServer(servers.signal);
      const listen = new URL(signalUrl).host;
      for (let attempt = 0; ; attempt++) {
        const s = spawnServer(
          'signal',
          path.join(TARGET_DIR, 'debug', 'shoal-signal'),
          ['--listen', listen, '--web-dir', WEB_DIR, '--pkg-dir', PKG_DIR, ...signalArgs],
          { env, marker: 'SHOAL_SIGNAL_LISTENING', timeoutMs: 30_000 },
        );
        try {
          await s.ready;
          servers.signal = s;
          return s;
        } catch (e) {
          if (attempt >= 10) throw e;
          await sleep(300);
        }
      }
    },
    stop: async () => {
      await Promise.all([stopServer(seed), stopServer(servers.signal), ...extraSeeds.map(stopServer)]);
    },
  };
  return servers;
}

/** The demo page URL for a signal server and a seed (as `npm start` prints it). */
export function demoUrl(signalUrl, seedUrl, extra = {}) {
  const u = new URL('/', signalUrl);
  if (seedUrl) u.searchParams.set('seed', seedUrl);
  for (const [k, v] of Object.entries(extra)) u.searchParams.set(k, String(v));
  return u.toString();
}

/**
 * The seed's VOD library: fetches `<seed>/vod/index.json` and returns
 * [{ contentId, manifestUrl, entry }]. Accepts a top-level array or an object
 * holding one (videos/items/vods/content/library/entries); each entry names
 * its manifest (manifest / manifest_url / manifestUrl / url, relative to the
 * index) or its content id (then `/vod/<id>/manifest.json`).
 */
export async function listVods(seedUrl) {
  const indexUrl = new URL('/vod/index.json', seedUrl).toString();
  const idx = await fetchJson(indexUrl);
  const keys = ['videos', 'items', 'vods', 'content', 'contents', 'library', 'entries'];
  const list = Array.isArray(idx) ? idx : keys.map((k) => idx?.[k]).find(Array.isArray);
  if (!list) throw new Error(`${indexUrl}: no list of videos found in ${JSON.stringify(idx).slice(0, 300)}`);
  return list.map((entry) => {
    if (typeof entry === 'string') entry = { content_id: entry };
    const contentId = entry.content_id ?? entry.contentId ?? entry.id ?? null;
    const rel = entry.manifest ?? entry.manifest_url ?? entry.manifestUrl ?? entry.url;
    let manifestUrl;
    if (typeof rel === 'string') manifestUrl = new URL(rel, indexUrl).toString();
    else if (contentId) manifestUrl = new URL(`/vod/${contentId}/manifest.json`, seedUrl).toString();
    else throw new Error(`${indexUrl}: entry names neither a manifest nor a content id: ${JSON.stringify(entry)}`);
    return { contentId, manifestUrl, entry };
  });
}

// ---------------------------------------------------------------------------
// browser

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--allow-loopback-in-peer-connection',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/**
 * Headless Debian Chromium through playwright-core (never a downloaded
 * browser). Do not pass --disable-features in `args`: it would replace
 * Playwright's own.
 *
 * netns: the name of a network namespace (`ip netns add`, as the NAT lab in
 * nat-lab.mjs makes) to run Chromium in: Playwright then starts a small
 * wrapper, `exec ip netns exec NETNS chromium "$@"` (it talks to Chromium
 * over a pipe, which the wrapper keeps). Needs root.
 * loopback: false leaves out --allow-loopback-in-peer-connection (a browser
 * with a real network then gathers no 127.0.0.1 candidate, whose STUN
 * requests could only fail).
 */
export async function launchBrowser({ args = [], netns, loopback = true, ...opts } = {}) {
  const { chromium } = await import('playwright-core');
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/setup.sh`);
  let executablePath = CHROMIUM;
  if (netns) {
    if (!/^[A-Za-z0-9_.-]+$/.test(netns)) throw new Error(`bad network namespace name ${JSON.stringify(netns)}`);
    executablePath = path.join(await tempDir('shoal-netns-chromium-'), 'chromium');
    writeFileSync(executablePath, `#!/bin/sh\nexec ip netns exec ${netns} ${CHROMIUM} "$@"\n`, { mode: 0o755 });
  }
  return chromium.launch({
    executablePath,
    headless: true,
    args: [...CHROMIUM_ARGS.filter((a) => loopback || a !== '--allow-loopback-in-peer-connection'), ...args],
    timeout: 60_000,
    ...opts,
  });
}

// ---------------------------------------------------------------------------
// loopback-only checks

/** Network interfaces of this process's network namespace (from /proc/net/dev). */
export function netInterfaces() {
  return readFileSync('/proc/net/dev', 'utf8')
    .split('\n')
    .slice(2)
    .map((l) => l.split(':')[0].trim())
    .filter(Boolean);
}

/** Throws unless this process runs in a network namespace whose only interface is lo. */
export function assertIsolatedNetns() {
  const ifs = netInterfaces();
  if (ifs.length !== 1 || ifs[0] !== 'lo') {
    throw new Error(
      `not in an isolated network namespace (interfaces: ${ifs.join(', ')}); ` +
        'run WebRTC tests through scripts/netns.sh (npm test does)',
    );
  }
}

export function isLoopbackAddress(addr) {
  const a = addr.replace(/^\[|\]$/g, '').toLowerCase();
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a)) return true;
  return a === '::1' || a === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(a);
}

/**
 * Addresses named by one ICE candidate line ("candidate:... <addr> <port> typ
 * ..."; an "a=" prefix is accepted): the connection address, and the related
 * address (raddr) unless it is the 0.0.0.0 / :: placeholder Chromium shows.
 * Returns [] for an empty (end-of-candidates) string.
 */
export function candidateAddresses(candidate) {
  const s = String(candidate).trim().replace(/^a=/, '');
  if (!s) return [];
  const f = s.replace(/^candidate:/, '').split(/\s+/);
  if (f.length < 8 || f[6] !== 'typ') throw new Error(`malformed ICE candidate: ${JSON.stringify(candidate)}`);
  const out = [f[4]];
  const r = f.indexOf('raddr');
  if (r > 0 && f[r + 1] && !['0.0.0.0', '::'].includes(f[r + 1])) out.push(f[r + 1]);
  return out;
}

/**
 * Makes every page of a Playwright browser context record its ICE candidates
 * in `window.__shoalCandidates`: RTCPeerConnection is replaced (before any
 * page script runs) by a subclass that records local candidates
 * ('icecandidate' events), the `a=candidate` lines of local and remote
 * descriptions, and candidates given to addIceCandidate. The player itself
 * records nothing; call this on every context that opens viewer pages.
 */
export async function recordCandidates(context) {
  await context.addInitScript(() => {
    const Base = window.RTCPeerConnection;
    if (!Base || Base.__shoalRecording) return;
    const record = (c) => {
      if (typeof c !== 'string' || !c.trim()) return;
      if (!Array.isArray(window.__shoalCandidates)) window.__shoalCandidates = [];
      window.__shoalCandidates.push(c);
    };
    const fromSdp = (desc) => {
      const sdp = desc && desc.sdp;
      if (typeof sdp !== 'string') return;
      for (const line of sdp.split(/\r?\n/)) if (line.startsWith('a=candidate:')) record(line.slice(2));
    };
    class RecordingPeerConnection extends Base {
      constructor(...args) {
        super(...args);
        this.addEventListener('icecandidate', (e) => record(e.candidate && e.candidate.candidate));
      }
      async setLocalDescription(...args) {
        const r = await super.setLocalDescription(...args);
        fromSdp(this.localDescription);
        return r;
      }
      setRemoteDescription(desc, ...rest) {
        fromSdp(desc);
        return super.setRemoteDescription(desc, ...rest);
      }
      addIceCandidate(c, ...rest) {
        record(typeof c === 'string' ? c : c && c.candidate);
        return super.addIceCandidate(c, ...rest);
      }
    }
    Object.defineProperty(RecordingPeerConnection, '__shoalRecording', { value: true });
    window.RTCPeerConnection = RecordingPeerConnection;
  });
}

/**
 * Checks that every ICE candidate recorded in `window.__shoalCandidates`
 * (see recordCandidates; strings, or RTCIceCandidate-like objects with a
 * `candidate` field) names only 127.0.0.0/8 or ::1, and that this process is
 * inside an isolated network namespace. Throws otherwise, also when the page
 * recorded fewer than `min` candidates. Returns the candidate strings.
 */
export async function assertLoopbackCandidates(page, { min = 1 } = {}) {
  assertIsolatedNetns();
  const cands = await page.evaluate(() => {
    const c = window.__shoalCandidates;
    if (!Array.isArray(c)) return null;
    return c.map((x) => (typeof x === 'string' ? x : x && typeof x.candidate === 'string' ? x.candidate : JSON.stringify(x)));
  });
  if (cands === null) throw new Error('the page has no window.__shoalCandidates array (call recordCandidates(context) before opening the page)');
  const bad = [];
  for (const c of cands) {
    for (const a of candidateAddresses(c)) if (!isLoopbackAddress(a)) bad.push(c);
  }
  if (bad.length) throw new Error(`non-loopback ICE candidates: ${JSON.stringify(bad)}`);
  const real = cands.filter((c) => c.trim());
  if (real.length < min) throw new Error(`expected at least ${min} ICE candidate(s), the page recorded ${real.length}`);
  return real;
}
