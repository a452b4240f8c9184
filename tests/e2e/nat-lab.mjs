// A NAT lab made of network namespaces, for the STUN/TURN end-to-end test
// (nat.test.mjs) and its benchmark (bench-nat.mjs).
//
// Must run as root inside scripts/netns.sh (a fresh namespace with only lo).
// That namespace becomes the lab's "public network" 198.51.100.0/24
// (TEST-NET-2): a bridge `shbr` holding 198.51.100.1, where the signal
// server, the seed and coturn listen. Each "home" i is two namespaces made
// with `ip netns add`:
//
//   shr<i>-<S>  the home's NAT router: `wan` 198.51.100.1<i> on the bridge,
//               `lan` 192.168.<i>.1, IPv4 forwarding, iptables MASQUERADE
//               out of wan (port-preserving: a cone-like NAT that STUN hole
//               punching gets through), or MASQUERADE --random-fully for a
//               symmetric NAT (a new port per destination: only TURN works)
//   shh<i>-<S>  the home's computer: `eth0` 192.168.<i>.2, default route via
//               the router; a Chromium viewer runs here (launchBrowser's
//               netns option in lib.mjs)
//
// <S> is unique per lab (pid + random). No namespace has any route or link
// to anything but these: nothing can leave them. Every namespace, link and
// process the lab made is removed by destroy(), and on process exit or
// SIGINT/SIGTERM even when a test fails; a lab whose process was killed
// with SIGKILL is removed by the next lab made on this machine.

import { execFileSync, spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { netInterfaces, sleep, tempDir, withTimeout } from './lib.mjs';

export const PUBLIC_IP = '198.51.100.1';
export const PUBLIC_NET = '198.51.100.0/24';
export const BRIDGE = 'shbr';
const TURNSERVER = '/usr/bin/turnserver';
const NAME_RE = /^sh[rh](\d+)-(\d+)x([0-9a-f]+)$/;

const homeWanIp = (i) => `198.51.100.${10 + i}`;
const homeLanNet = (i) => `192.168.${i}.0/24`;

function run(cmd, args, { allowFail = false, input } = {}) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'], input, timeout: 20_000 });
  } catch (e) {
    if (allowFail) return null;
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(e.stderr || e.message || '').toString().trim()}`);
  }
}
const ip = (...args) => run('ip', args);

/** Runs a command in a named namespace: `ip netns exec NS CMD...` (synchronous; returns stdout). */
export function nsExec(ns, args, opts) {
  return run('ip', ['netns', 'exec', ns, ...args], opts);
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/** Namespaces of labs whose process is gone (killed with SIGKILL): deleted. */
function removeStaleLabs() {
  const list = run('ip', ['netns', 'list'], { allowFail: true }) || '';
  for (const line of list.split('\n')) {
    const name = line.split(/\s+/)[0];
    const m = name && name.match(NAME_RE);
    if (m && Number(m[2]) !== process.pid && !pidAlive(Number(m[2]))) {
      run('ip', ['netns', 'del', name], { allowFail: true });
    }
  }
}

/** The inode of a process's network namespace (net:[N]), or null when unreadable. */
function netnsId(pid = 'self') {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return null;
  }
}

const liveLabs = new Set();
let hooksInstalled = false;
function installExitHooks() {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const lab of liveLabs) lab.destroySync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      for (const lab of liveLabs) lab.destroySync();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
}

/**
 * Builds the lab. `homes`: one entry per home, { nat: 'cone' | 'symmetric' }.
 * Must be called in a namespace that has only lo (scripts/netns.sh), as root.
 *
 * Returns the lab: { suffix, publicIp, homes: [{ index, nat, router, host,
 * lanIp, wanIp }], startTurn(opts), stunMapped(home), assertContained(),
 * natCounters(),
 * destroy() }.
 */
export async function createNatLab({ homes = [{ nat: 'cone' }, { nat: 'cone' }], log = () => {} } = {}) {
  if (process.getuid?.() !== 0) throw new Error('the NAT lab needs root (ip netns, iptables)');
  const ifs = netInterfaces();
  if (ifs.length !== 1 || ifs[0] !== 'lo') {
    throw new Error(`the NAT lab must start in a namespace with only lo (found: ${ifs.join(', ')}); run it through scripts/netns.sh`);
  }
  const initNs = netnsId(1);
  if (initNs && initNs === netnsId()) throw new Error('refusing to build the NAT lab in the machine\'s own network namespace');
  if (!existsSync(TURNSERVER)) throw new Error(`${TURNSERVER} is missing (Debian package coturn): run scripts/setup.sh`);
  removeStaleLabs();

  const suffix = `${process.pid}x${randomBytes(3).toString('hex')}`;
  const dir = await tempDir('shoal-natlab-');
  const lab = {
    suffix,
    dir,
    publicIp: PUBLIC_IP,
    homes: [],
    namespaces: [],
    children: new Set(),
    destroyed: false,
  };
  installExitHooks();
  liveLabs.add(lab);

  lab.destroySync = () => {
    if (lab.destroyed) return;
    lab.destroyed = true;
    liveLabs.delete(lab);
    for (const c of lab.children) {
      try {
        c.kill('SIGKILL');
      } catch {}
    }
    // Processes still inside a home (a browser left behind) are killed
    // before its namespace goes.
    for (const ns of lab.namespaces) {
      const pids = run('ip', ['netns', 'pids', ns], { allowFail: true }) || '';
      for (const p of pids.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {}
      }
    }
    for (const ns of lab.namespaces) run('ip', ['netns', 'del', ns], { allowFail: true });
    // Deleting a router namespace deleted its veth pair; what is left in ours:
    for (const name of netInterfaces()) {
      if (name !== 'lo' && (name === BRIDGE || /^shw\d+$/.test(name))) run('ip', ['link', 'del', name], { allowFail: true });
    }
  };
  lab.destroy = async () => {
    const waits = [...lab.children].map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : null));
    for (const c of lab.children) {
      try {
        c.kill('SIGTERM');
      } catch {}
    }
    await Promise.race([Promise.all(waits), sleep(3_000)]);
    lab.destroySync();
  };

  try {
    ip('link', 'set', 'lo', 'up');
    ip('link', 'add', BRIDGE, 'type', 'bridge');
    ip('addr', 'add', `${PUBLIC_IP}/24`, 'dev', BRIDGE);
    ip('link', 'set', BRIDGE, 'up');
    homes.forEach((h, k) => {
      const i = k + 1;
      const nat = h.nat ?? 'cone';
      if (!['cone', 'symmetric'].includes(nat)) throw new Error(`home ${i}: unknown NAT type ${nat}`);
      const router = `shr${i}-${suffix}`;
      const host = `shh${i}-${suffix}`;
      const home = { index: i, nat, router, host, lanIp: `192.168.${i}.2`, gatewayIp: `192.168.${i}.1`, wanIp: homeWanIp(i) };
      ip('netns', 'add', router);
      lab.namespaces.push(router);
      ip('netns', 'add', host);
      lab.namespaces.push(host);
      // wan: the router's leg on the public bridge
      ip('link', 'add', `shw${i}`, 'type', 'veth', 'peer', 'name', 'wan', 'netns', router);
      ip('link', 'set', `shw${i}`, 'master', BRIDGE, 'up');
      ip('-n', router, 'addr', 'add', `${home.wanIp}/24`, 'dev', 'wan');
      ip('-n', router, 'link', 'set', 'wan', 'up');
      ip('-n', router, 'link', 'set', 'lo', 'up');
      // lan: router <-> the home's computer
      ip('-n', router, 'link', 'add', 'lan', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host);
      ip('-n', router, 'addr', 'add', `${home.gatewayIp}/24`, 'dev', 'lan');
      ip('-n', router, 'link', 'set', 'lan', 'up');
      ip('-n', host, 'addr', 'add', `${home.lanIp}/24`, 'dev', 'eth0');
      ip('-n', host, 'link', 'set', 'eth0', 'up');
      ip('-n', host, 'link', 'set', 'lo', 'up');
      ip('-n', host, 'route', 'add', 'default', 'via', home.gatewayIp);
      nsExec(router, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      const masq = ['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-s', homeLanNet(i), '-o', 'wan', '-j', 'MASQUERADE'];
      if (nat === 'symmetric') masq.push('--random-fully');
      nsExec(router, masq);
      // Only the home's own LAN is forwarded out, only to the public network.
      nsExec(router, ['iptables', '-P', 'FORWARD', 'DROP']);
      nsExec(router, ['iptables', '-A', 'FORWARD', '-i', 'lan', '-o', 'wan', '-s', homeLanNet(i), '-d', PUBLIC_NET, '-j', 'ACCEPT']);
      nsExec(router, ['iptables', '-A', 'FORWARD', '-i', 'wan', '-o', 'lan', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']);
      lab.homes.push(home);
    });
    log(`NAT lab ${suffix}: public ${PUBLIC_IP} on ${BRIDGE}; ${lab.homes.map((h) => `home ${h.index} ${h.nat} (${h.wanIp} / ${h.lanIp})`).join(', ')}`);
  } catch (e) {
    lab.destroySync();
    throw e;
  }

  /**
   * Starts coturn (Debian's turnserver) in the public namespace on
   * 198.51.100.1:port with the TURN REST API shared secret. Resolves once it
   * answers a STUN binding request from a home (coturn prints nothing
   * reliable when ready). Returns { stun, turn, secret, realm, credentials(id,
   * ttlS), logs(), stop() }.
   */
  lab.startTurn = async ({ secret = randomBytes(16).toString('hex'), realm = 'shoal.test', port = 3478, timeoutMs = 20_000 } = {}) => {
    const args = [
      '-n',
      `--listening-ip=${PUBLIC_IP}`,
      `--relay-ip=${PUBLIC_IP}`,
      `--listening-port=${port}`,
      '--use-auth-secret',
      `--static-auth-secret=${secret}`,
      `--realm=${realm}`,
      '--fingerprint',
      '--no-tls',
      '--no-dtls',
      '--no-tcp-relay',
      '--no-cli',
      '--no-multicast-peers',
      '--min-port=49152',
      '--max-port=49999',
      '--log-file=stdout',
      '--simple-log',
      `--pidfile=${path.join(dir, 'turnserver.pid')}`,
      `--userdb=${path.join(dir, 'turndb')}`,
    ];
    const child = spawn(TURNSERVER, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    lab.children.add(child);
    const tail = [];
    const keep = (l) => {
      tail.push(l);
      if (tail.length > 300) tail.shift();
      if (process.env.SHOAL_E2E_LOG) process.stderr.write(`turnserver: ${l}\n`);
    };
    readline.createInterface({ input: child.stdout }).on('line', keep);
    readline.createInterface({ input: child.stderr }).on('line', keep);
    let exited = null;
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      lab.children.delete(child);
    });
    const turn = {
      secret,
      realm,
      stun: `stun:${PUBLIC_IP}:${port}`,
      turn: `turn:${PUBLIC_IP}:${port}?transport=udp`,
      logs: () => tail.join('\n'),
      /** coturn's TURN REST API credential: username "<expiry>:<id>", password base64(HMAC-SHA1(secret, username)). */
      credentials: (id = 'test', ttlS = 600) => {
        const username = `${Math.floor(Date.now() / 1000) + ttlS}:${id}`;
        return { username, credential: createHmac('sha1', secret).update(username).digest('base64') };
      },
      stop: async () => {
        if (exited) return;
        child.kill('SIGTERM');
        await Promise.race([new Promise((r) => child.once('exit', r)), sleep(3_000)]);
        if (!exited) child.kill('SIGKILL');
      },
    };
    const probeHome = lab.homes[0];
    await withTimeout(
      (async () => {
        for (;;) {
          if (exited) throw new Error(`turnserver exited (${JSON.stringify(exited)}):\n${turn.logs()}`);
          if (probeHome) {
            const mapped = lab.stunMapped(probeHome, port);
            if (mapped) return;
          } else if (/Total General servers|IPv4\. UDP listener opened/.test(turn.logs())) return;
          await sleep(200);
        }
      })(),
      timeoutMs,
      'turnserver: waiting for STUN answers',
    ).catch(async (e) => {
      await turn.stop();
      e.message += `\n--- turnserver output ---\n${turn.logs()}`;
      throw e;
    });
    lab.turn = turn;
    return turn;
  };

  /**
   * The address:port a STUN server on the public network sees for a UDP
   * socket in `home` (turnutils_stunclient run in the home's namespace), or
   * null when there is no answer.
   */
  lab.stunMapped = (home, port = 3478) => {
    const out = run('timeout', ['5', 'ip', 'netns', 'exec', home.host, 'turnutils_stunclient', '-p', String(port), PUBLIC_IP], { allowFail: true });
    const m = out && out.match(/UDP reflexive addr:\s*([0-9.]+):(\d+)/);
    return m ? { address: m[1], port: Number(m[2]) } : null;
  };

  /**
   * Throws unless every namespace holds only the links the lab made: ours
   * lo + shbr + shw<i>, each router lo + wan + lan, each home lo + eth0,
   * and no route leads anywhere but the lab's networks. Returns a summary.
   */
  lab.assertContained = () => {
    const problems = [];
    const links = (ns) =>
      (ns ? run('ip', ['-n', ns, '-o', 'link', 'show']) : run('ip', ['-o', 'link', 'show']))
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(':')[1].trim().split('@')[0])
        .sort();
    const expectLinks = (ns, want) => {
      const got = links(ns);
      const w = [...want].sort();
      if (JSON.stringify(got) !== JSON.stringify(w)) problems.push(`${ns || 'public'}: links ${got.join(',')} (expected ${w.join(',')})`);
    };
    const routes = (ns) =>
      run('ip', [...(ns ? ['-n', ns] : []), '-4', 'route', 'show', 'table', 'all'])
        .split('\n')
        .filter((l) => l && !/^(local|broadcast|multicast) /.test(l) && !/ table local /.test(l));
    expectLinks(null, ['lo', BRIDGE, ...lab.homes.map((h) => `shw${h.index}`)]);
    const ourRoutes = routes(null);
    if (ourRoutes.some((r) => !r.startsWith(`${PUBLIC_NET} `))) problems.push(`public: unexpected routes ${JSON.stringify(ourRoutes)}`);
    if (netInterfaces().some((n) => n !== 'lo' && n !== BRIDGE && !/^shw\d+$/.test(n))) problems.push(`public: interfaces ${netInterfaces()}`);
    for (const h of lab.homes) {
      expectLinks(h.router, ['lo', 'wan', 'lan']);
      expectLinks(h.host, ['lo', 'eth0']);
      const rr = routes(h.router);
      if (rr.some((r) => !r.startsWith(`${PUBLIC_NET} `) && !r.startsWith(`${homeLanNet(h.index)} `))) problems.push(`${h.router}: routes ${JSON.stringify(rr)}`);
      const hr = routes(h.host);
      if (hr.some((r) => !r.startsWith(`default via ${h.gatewayIp} `) && !r.startsWith(`${homeLanNet(h.index)} `))) problems.push(`${h.host}: routes ${JSON.stringify(hr)}`);
    }
    const initNs = netnsId(1);
    if (initNs && initNs === netnsId()) problems.push('the lab runs in the machine\'s own network namespace');
    if (problems.length) throw new Error(`the NAT lab is not contained:\n  ${problems.join('\n  ')}`);
    return { namespaces: [...lab.namespaces], publicLinks: links(null) };
  };

  /** Packets each router forwarded out of its home and NATed (iptables counters), by home index. */
  lab.natCounters = () => {
    const out = {};
    for (const h of lab.homes) {
      const t = nsExec(h.router, ['iptables', '-t', 'nat', '-L', 'POSTROUTING', '-v', '-n', '-x'], { allowFail: true }) || '';
      const m = t.split('\n').find((l) => /MASQUERADE/.test(l));
      out[h.index] = m ? Number(m.trim().split(/\s+/)[0]) : null;
    }
    return out;
  };

  return lab;
}

/** Is `addr` an address the lab made (public net, a home LAN), loopback, or an mDNS name? */
export function isLabAddress(addr) {
  const a = String(addr).replace(/^\[|\]$/g, '').toLowerCase();
  if (/^[0-9a-f-]+\.local$/.test(a)) return true;
  if (a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a)) return true;
  let m = a.match(/^198\.51\.100\.(\d{1,3})$/);
  if (m && Number(m[1]) < 256) return true;
  m = a.match(/^192\.168\.(\d{1,3})\.(\d{1,3})$/);
  return !!(m && Number(m[1]) < 256 && Number(m[2]) < 256);
}
