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
//               out of wan (port-preserving: a port-restricted cone NAT
//               that STUN hole punching gets through), or MASQUERADE
//               --random-fully for a symmetric NAT (a new port per
//               destination: only TURN works); a firewall drops everything
//               from the wan addressed to the router itself, and forwards
//               in only what conntrack matches to an outbound flow
//   shh<i>-<S>  the home's computer: `eth0` 192.168.<i>.2, default route via
//               the router; a Chromium viewer runs here (launchBrowser's
//               netns option in lib.mjs)
//
// <S> is unique per lab (pid + random). No namespace has any route or link
// to anything but these: nothing can leave them. The public namespace's
// default route goes to 198.51.100.254 on the bridge, which does not exist
// (static neighbor, unused MAC): frames to it are dropped in the lab, as
// the Internet drops private addresses a TURN server is asked to reach. Every namespace, link and
// process the lab made is removed by destroy(), and on process exit or
// SIGINT/SIGTERM even when a test fails; a lab whose process was killed
// with SIGKILL is removed by the next lab made on this machine.

import { execFileSync, spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import {
  candidateAddresses, launchBrowser, netInterfaces, recordCandidates, sleep, startServers, tempDir, withTimeout,
} from './lib.mjs';

export const PUBLIC_IP = '198.51.100.1';
export const PUBLIC_NET = '198.51.100.0/24';
export const BRIDGE = 'shbr';
const NOWHERE_IP = '198.51.100.254';
const NOWHERE_MAC = '02:00:5e:00:53:fe';
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
    // The rest of the "Internet": a default route to a gateway that does
    // not exist (a static neighbor entry with an unused MAC address, so no
    // ARP): what it is sent reaches the bridge and nobody takes it, as the
    // real Internet drops private addresses. Without it a TURN server asked
    // to relay to a home's private host candidate gets ENETUNREACH, and
    // coturn then closes the whole allocation.
    ip('neigh', 'add', NOWHERE_IP, 'lladdr', NOWHERE_MAC, 'dev', BRIDGE, 'nud', 'permanent');
    ip('route', 'add', 'default', 'via', NOWHERE_IP, 'dev', BRIDGE);
    homes.forEach((h, k) => {
      const i = k + 1;
      const nat = h.nat ?? 'cone';
      if (!['cone', 'symmetric', 'cloud'].includes(nat)) throw new Error(`home ${i}: unknown NAT type ${nat}`);
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
      if (nat === 'cloud') {
        // A cloud instance: a 1:1 NAT maps the public address to the
        // instance's private one, and a firewall lets in only the TCP
        // ports and UDP range the operator opened (h.open: { tcp: [..],
        // udp: [min, max] }).
        nsExec(router, ['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-s', home.lanIp, '-o', 'wan', '-j', 'SNAT', '--to-source', home.wanIp]);
        const open = h.open ?? {};
        const rules = [
          ...(open.tcp ?? []).map((p) => ['-p', 'tcp', '--dport', String(p)]),
          ...(open.udp ? [['-p', 'udp', '--dport', `${open.udp[0]}:${open.udp[1]}`]] : []),
        ];
        for (const r of rules) {
          nsExec(router, ['iptables', '-t', 'nat', '-A', 'PREROUTING', '-i', 'wan', '-d', home.wanIp, ...r, '-j', 'DNAT', '--to-destination', home.lanIp]);
          nsExec(router, ['iptables', '-A', 'FORWARD', '-i', 'wan', '-o', 'lan', '-d', home.lanIp, ...r, '-j', 'ACCEPT']);
        }
        home.open = open;
      } else {
        const masq = ['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-s', homeLanNet(i), '-o', 'wan', '-j', 'MASQUERADE'];
        if (nat === 'symmetric') masq.push('--random-fully');
        nsExec(router, masq);
      }
      // A home router's firewall: nothing from the WAN reaches the router
      // itself. Besides being what routers do, this keeps Linux conntrack
      // from confirming an entry for a peer's first hole-punching packet
      // (it arrives before our own side's packet has opened the mapping),
      // which would make the later outbound mapping clash and take another
      // port, so that hole punching through this "cone" NAT would fail.
      nsExec(router, ['iptables', '-A', 'INPUT', '-i', 'wan', '-j', 'DROP']);
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
      ...(process.env.SHOAL_TURN_VERBOSE ? ['--verbose'] : []),
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
    if (ourRoutes.some((r) => !r.startsWith(`${PUBLIC_NET} `) && !r.startsWith(`default via ${NOWHERE_IP} dev ${BRIDGE}`)))
      problems.push(`public: unexpected routes ${JSON.stringify(ourRoutes)}`);
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

// ---------------------------------------------------------------------------
// what each browser's RTCPeerConnections did, from the browser's own getStats

/**
 * Makes every page of a browser context keep its RTCPeerConnections (call
 * after lib.mjs's recordCandidates): RTCPeerConnection is replaced by a
 * subclass that records, per connection, its creation and 'connected' times
 * and both ICE ufrags (which pair up the two ends of one viewer-viewer
 * connection across pages), and samples the selected candidate pair from
 * getStats() every 500 ms while open (so a closed connection keeps its last
 * figures). window.__shoalPcReport() resolves to one record per connection:
 * { n, createdAt, connectedAt, state, localUfrag, remoteUfrag, pair: {
 * localType, remoteType, localAddress, remoteAddress, remotePort,
 * relayProtocol, bytesSent, bytesReceived } | null }.
 */
export async function recordPeerConnections(context) {
  await context.addInitScript(() => {
    const Base = window.RTCPeerConnection;
    if (!Base || Base.__shoalPcRecording) return;
    const pcs = [];
    const ufrag = (sdp) => {
      const m = typeof sdp === 'string' && sdp.match(/^a=ice-ufrag:(\S+)/m);
      return m ? m[1] : null;
    };
    const sample = async (rec) => {
      const pc = rec.pc;
      if (pc.connectionState === 'closed') return;
      let report;
      try {
        report = await pc.getStats();
      } catch {
        return;
      }
      const byId = new Map();
      report.forEach((s) => byId.set(s.id, s));
      let pair = null;
      report.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId) || pair;
      });
      if (!pair) {
        report.forEach((s) => {
          if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
        });
      }
      if (!pair) return;
      const l = byId.get(pair.localCandidateId) || {};
      const r = byId.get(pair.remoteCandidateId) || {};
      // Every selected pair seen, in order (ICE may switch to a better pair after the channel opened).
      const seen = `${l.candidateType}/${r.candidateType}`;
      if (rec.pairsSeen[rec.pairsSeen.length - 1] !== seen) rec.pairsSeen.push(seen);
      rec.pair = {
        localType: l.candidateType,
        remoteType: r.candidateType,
        localAddress: l.address ?? l.ip,
        localPort: l.port,
        remoteAddress: r.address ?? r.ip,
        remotePort: r.port,
        relayProtocol: l.relayProtocol ?? null,
        bytesSent: pair.bytesSent ?? 0,
        bytesReceived: pair.bytesReceived ?? 0,
      };
      rec.state = pc.connectionState;
    };
    // While not connected: the candidate pairs ICE is checking (for failure reports).
    const checks = async (rec) => {
      let report;
      try {
        report = await rec.pc.getStats();
      } catch {
        return;
      }
      const byId = new Map();
      report.forEach((s) => byId.set(s.id, s));
      const d = (c) => (c ? `${c.candidateType}:${c.address ?? c.ip}:${c.port}` : '?');
      const out = [];
      report.forEach((s) => {
        if (s.type === 'candidate-pair') out.push(`${d(byId.get(s.localCandidateId))} -> ${d(byId.get(s.remoteCandidateId))} ${s.state} req ${s.requestsSent ?? 0}/${s.responsesReceived ?? 0}`);
      });
      rec.checks = out;
      rec.checkedState = `${rec.pc.connectionState}/${rec.pc.iceConnectionState}`;
    };
    class PcRecordingPeerConnection extends Base {
      constructor(...args) {
        super(...args);
        const rec = { n: pcs.length, pc: this, createdAt: Date.now(), connectedAt: null, state: 'new', localUfrag: null, remoteUfrag: null, pair: null, pairsSeen: [], config: args[0] ? JSON.parse(JSON.stringify(args[0])) : null };
        pcs.push(rec);
        this.__shoalRec = rec;
        this.addEventListener('connectionstatechange', () => {
          rec.state = this.connectionState;
          if (this.connectionState === 'failed') checks(rec);
          if (this.connectionState === 'connected' && rec.connectedAt === null) {
            rec.connectedAt = Date.now();
            sample(rec);
          }
        });
        rec.timer = setInterval(() => {
          if (this.connectionState === 'closed') clearInterval(rec.timer);
          else if (this.connectionState === 'connected') sample(rec);
          else checks(rec);
        }, 500);
      }
      async setLocalDescription(...args) {
        const r = await super.setLocalDescription(...args);
        this.__shoalRec.localUfrag ??= ufrag(this.localDescription && this.localDescription.sdp);
        return r;
      }
      setRemoteDescription(desc, ...rest) {
        this.__shoalRec.remoteUfrag ??= ufrag(desc && desc.sdp);
        return super.setRemoteDescription(desc, ...rest);
      }
      close() {
        // Last figures before the connection goes (getStats is async: best effort).
        sample(this.__shoalRec);
        return super.close();
      }
    }
    Object.defineProperty(PcRecordingPeerConnection, '__shoalPcRecording', { value: true });
    window.RTCPeerConnection = PcRecordingPeerConnection;
    window.__shoalPcReport = async () => {
      await Promise.all(pcs.map((r) => (r.pc.connectionState === 'connected' ? sample(r) : null)));
      return pcs.map(({ pc, timer, ...r }) => ({ ...r, state: pc.connectionState === 'closed' ? `closed (was ${r.state})` : pc.connectionState }));
    };
  });
}

/** Route of a selected candidate pair: relay if either end is relay, else the remote/local types' "highest". */
export function pairRoute(pair) {
  if (!pair) return null;
  const t = [pair.localType, pair.remoteType];
  for (const k of ['relay', 'srflx', 'prflx', 'host']) if (t.includes(k)) return k;
  return t[0] ?? null;
}

/**
 * Pairs up viewers' connections: `reports[i]` is page i's __shoalPcReport().
 * A connection whose remote ufrag is another page's local ufrag is a
 * viewer-viewer connection; the others go to the seed. Returns { pairs:
 * [{ a, b, route, connected, connectMs, bytes, sides }], seedConns:
 * [{ viewer, route, bytes, state }] }.
 */
export function matchViewerPairs(reports) {
  const owner = new Map();
  reports.forEach((list, i) => list.forEach((r) => r.localUfrag && owner.set(r.localUfrag, { viewer: i, rec: r })));
  const pairs = new Map();
  const seedConns = [];
  reports.forEach((list, i) =>
    list.forEach((r) => {
      const other = r.remoteUfrag && owner.get(r.remoteUfrag);
      if (!other) {
        seedConns.push({ viewer: i, route: pairRoute(r.pair), bytes: (r.pair?.bytesReceived ?? 0) + (r.pair?.bytesSent ?? 0), state: r.state, pair: r.pair });
        return;
      }
      const [a, b] = [i, other.viewer].sort((x, y) => x - y);
      const key = `${a}-${b}`;
      const p = pairs.get(key) ?? { a, b, sides: [] };
      p.sides.push({ viewer: i, ...r });
      pairs.set(key, p);
    }),
  );
  for (const p of pairs.values()) {
    const withPair = p.sides.filter((s) => s.pair);
    const connectedSides = p.sides.filter((s) => s.connectedAt !== null);
    p.connected = connectedSides.length > 0;
    // Both ends' views agree on relay or not; take the one that saw most bytes.
    const best = withPair.sort((x, y) => y.pair.bytesReceived + y.pair.bytesSent - (x.pair.bytesReceived + x.pair.bytesSent))[0];
    const routes = withPair.map((s) => pairRoute(s.pair));
    p.route = routes.includes('relay') ? 'relay' : best ? pairRoute(best.pair) : null;
    p.routes = routes;
    p.pairsSeen = p.sides.map((s) => s.pairsSeen);
    p.bytes = Math.max(0, ...withPair.map((s) => s.pair.bytesReceived + s.pair.bytesSent));
    const created = Math.min(...p.sides.map((s) => s.createdAt));
    p.connectMs = p.connected ? Math.min(...connectedSides.map((s) => s.connectedAt)) - created : null;
  }
  return { pairs: [...pairs.values()], seedConns };
}

/**
 * Checks every ICE candidate a page recorded (lib.mjs recordCandidates)
 * names only an address the lab made (198.51.100.0/24, the homes'
 * 192.168.0.0/16), loopback, or an mDNS .local name. Returns the candidates.
 */
export async function assertLabCandidates(page, { min = 1 } = {}) {
  const cands = await page.evaluate(() => {
    const c = window.__shoalCandidates;
    if (!Array.isArray(c)) return null;
    return c.map((x) => (typeof x === 'string' ? x : x && typeof x.candidate === 'string' ? x.candidate : JSON.stringify(x)));
  });
  if (cands === null) throw new Error('the page has no window.__shoalCandidates array (call recordCandidates(context) before opening the page)');
  const bad = [];
  for (const c of cands) for (const a of candidateAddresses(c)) if (!isLabAddress(a)) bad.push(c);
  if (bad.length) throw new Error(`ICE candidates outside the NAT lab: ${JSON.stringify(bad)}`);
  const real = cands.filter((c) => c.trim());
  if (real.length < min) throw new Error(`expected at least ${min} ICE candidate(s), the page recorded ${real.length}`);
  return real;
}

/** Candidate types ("host", "srflx", "relay", ...) among candidate strings. */
export function candidateTypes(cands) {
  const out = {};
  for (const c of cands) {
    const m = c.match(/ typ (\S+)/);
    if (m) out[m[1]] = (out[m[1]] ?? 0) + 1;
  }
  return out;
}

// ---------------------------------------------------------------------------
// one swarm across the lab's homes

/**
 * Opens one headless Chromium viewer per home in `homes` (each browser runs
 * in its home's namespace), `gapMs` apart, on the player page served by the
 * signal server (`relay: true` adds ?relay=1: iceTransportPolicy "relay"),
 * then polls every second until `done({ stats, reports, matched })` is true
 * or `timeoutMs` pass since the last join (never less than `minWatchMs`).
 * Every wait is bounded. Closes the browsers before returning.
 *
 * Returns { stats (player.stats() per viewer), reports (__shoalPcReport per
 * viewer), matched (matchViewerPairs), candidates (per viewer, checked by
 * assertLabCandidates), errors, timedOut, watchedMs }.
 */
export async function runNatSwarm({
  servers,
  vod,
  homes,
  relay = false,
  gapMs = 4_000,
  minWatchMs = 0,
  timeoutMs = 40_000,
  done = () => false,
  query = {},
  log = () => {},
}) {
  const origins = [servers.signalUrl, servers.seedUrl].filter(Boolean).map((u) => new URL(u).origin).join(',');
  const browsers = [];
  const pages = [];
  const errors = [];
  const snapshot = async () => {
    const stats = [];
    const reports = [];
    for (const p of pages) {
      const r = await withTimeout(
        p.evaluate(async () => ({
          stats: window.player ? window.player.stats() : { error: window.shoalError || 'player did not start' },
          pcs: window.__shoalPcReport ? await window.__shoalPcReport() : [],
        })),
        10_000,
        'reading a viewer\'s stats',
      );
      stats.push(r.stats);
      reports.push(r.pcs);
    }
    return { stats, reports, matched: matchViewerPairs(reports) };
  };
  try {
    for (const [k, home] of homes.entries()) {
      if (k > 0) await sleep(gapMs);
      const browser = await launchBrowser({
        netns: home.host,
        loopback: false,
        // The lab serves plain http on 198.51.100.1: the player needs a secure context (WebCrypto).
        args: [`--unsafely-treat-insecure-origin-as-secure=${origins}`],
      });
      browsers.push(browser);
      const ctx = await browser.newContext();
      await recordCandidates(ctx);
      await recordPeerConnections(ctx);
      const page = await ctx.newPage();
      page.on('pageerror', (e) => errors.push(`home ${home.index}: page error: ${e.message}`));
      page.on('console', (m) => {
        if (process.env.SHOAL_E2E_LOG) process.stderr.write(`home ${home.index}: ${m.text()}\n`);
      });
      const u = new URL('/player.html', servers.signalUrl);
      u.searchParams.set('src', vod.manifestUrl);
      u.searchParams.set('signal', servers.signalWs);
      if (relay) u.searchParams.set('relay', '1');
      for (const [key, v] of Object.entries(query)) u.searchParams.set(key, String(v));
      await page.goto(u.toString(), { timeout: 30_000 });
      pages.push(page);
      log(`viewer in home ${home.index} (${home.nat}) opened ${u.pathname}${u.search.replace(/src=[^&]*&?/, '')}`);
    }
    const start = Date.now();
    let snap;
    let timedOut = false;
    for (;;) {
      await sleep(1_000);
      snap = await snapshot();
      const elapsed = Date.now() - start;
      if (elapsed >= minWatchMs && done(snap)) break;
      if (elapsed > timeoutMs) {
        timedOut = true;
        break;
      }
    }
    const candidates = [];
    for (const p of pages) candidates.push(await assertLabCandidates(p));
    return { ...snap, candidates, errors, timedOut, watchedMs: Date.now() - start };
  } finally {
    await Promise.all(browsers.map((b) => withTimeout(b.close(), 15_000, 'closing a browser').catch(() => {})));
  }
}

/** The lab's usual servers: signal (with `signalArgs`) and seed on 198.51.100.1. */
export async function startLabServers({ turn, relayTtlS = 600, signalArgs = [], ...opts } = {}) {
  const args = [...signalArgs];
  if (turn) args.push('--stun', turn.stun, '--turn', turn.turn, '--turn-secret', turn.secret, '--turn-ttl-s', String(relayTtlS));
  return startServers({ host: PUBLIC_IP, signalArgs: args, ...opts });
}

// ---------------------------------------------------------------------------
// the lab checked on its own: plain WebRTC between two homes (no Shoal code)

/**
 * Connects a data channel between two pages (each in its home's browser)
 * with RTCPeerConnection `config` (iceServers, iceTransportPolicy), the
 * offer and answer carried by this process after ICE gathering completed,
 * sends `bytes` from a to b, and returns { connected, route, pairA, pairB,
 * received, connectMs, candidatesA, candidatesB } (route: pairRoute of a's
 * selected pair). Bounded by timeoutMs.
 */
export async function rawWebRtcPair(pageA, pageB, config, { bytes = 256 * 1024, timeoutMs = 20_000 } = {}) {
  const setup = (cfg) => {
    const pc = new RTCPeerConnection(cfg);
    window.__raw = { pc, received: 0, cands: [], t0: Date.now(), connectedAt: null };
    pc.addEventListener('icecandidate', (e) => e.candidate && e.candidate.candidate && window.__raw.cands.push(e.candidate.candidate));
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected') window.__raw.connectedAt = Date.now();
    });
    const onChannel = (dc) => {
      window.__raw.dc = dc;
      dc.binaryType = 'arraybuffer';
      dc.onmessage = (m) => (window.__raw.received += m.data.byteLength ?? m.data.length);
    };
    pc.ondatachannel = (e) => onChannel(e.channel);
    return { pc, onChannel };
  };
  const gathered = (pc) =>
    pc.iceGatheringState === 'complete'
      ? null
      : new Promise((r) => pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()));
  const run = async () => {
    const offer = await pageA.evaluate(
      async ([cfg, setupSrc, gatheredSrc]) => {
        const { pc, onChannel } = eval(`(${setupSrc})`)(cfg);
        onChannel(pc.createDataChannel('lab', { ordered: true }));
        await pc.setLocalDescription(await pc.createOffer());
        await eval(`(${gatheredSrc})`)(pc);
        return pc.localDescription.toJSON();
      },
      [config, setup.toString(), gathered.toString()],
    );
    const answer = await pageB.evaluate(
      async ([cfg, offer, setupSrc, gatheredSrc]) => {
        const { pc } = eval(`(${setupSrc})`)(cfg);
        await pc.setRemoteDescription(offer);
        await pc.setLocalDescription(await pc.createAnswer());
        await eval(`(${gatheredSrc})`)(pc);
        return pc.localDescription.toJSON();
      },
      [config, offer, setup.toString(), gathered.toString()],
    );
    await pageA.evaluate(async (answer) => window.__raw.pc.setRemoteDescription(answer), answer);
    const opened = await pageA.evaluate(async () => {
      const dc = window.__raw.dc;
      if (dc.readyState !== 'open') {
        const ok = await new Promise((r) => {
          dc.onopen = () => r(true);
          window.__raw.pc.addEventListener('connectionstatechange', () => window.__raw.pc.connectionState === 'failed' && r(false));
        });
        if (!ok) return false;
      }
      return true;
    });
    if (opened) {
      await pageA.evaluate(async (n) => {
        const dc = window.__raw.dc;
        const chunk = new Uint8Array(16 * 1024);
        for (let sent = 0; sent < n; sent += chunk.length) {
          while (dc.bufferedAmount > 1 << 20) await new Promise((r) => setTimeout(r, 10));
          dc.send(chunk);
        }
      }, bytes);
      await waitForPage(pageB, (n) => window.__raw.received >= n, bytes);
    }
    const info = async (page) =>
      page.evaluate(async () => {
        const { pc, cands, received, t0, connectedAt } = window.__raw;
        const report = await pc.getStats();
        const byId = new Map();
        report.forEach((s) => byId.set(s.id, s));
        let pair = null;
        report.forEach((s) => {
          if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
        });
        const l = pair && byId.get(pair.localCandidateId);
        const r = pair && byId.get(pair.remoteCandidateId);
        const out = {
          state: pc.connectionState,
          received,
          connectMs: connectedAt ? connectedAt - t0 : null,
          cands,
          pair: pair && { localType: l.candidateType, remoteType: r.candidateType, localAddress: l.address, remoteAddress: r.address, bytesSent: pair.bytesSent, bytesReceived: pair.bytesReceived },
        };
        pc.close();
        return out;
      });
    const a = await info(pageA);
    const b = await info(pageB);
    return {
      connected: !!opened,
      route: pairRoute(a.pair),
      routeB: pairRoute(b.pair),
      pairA: a.pair,
      pairB: b.pair,
      received: b.received,
      connectMs: a.connectMs,
      candidatesA: a.cands,
      candidatesB: b.cands,
    };
  };
  return withTimeout(run(), timeoutMs, 'raw WebRTC pair between two homes');
}

async function waitForPage(page, fn, arg, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await page.evaluate(fn, arg))) {
    if (Date.now() > deadline) throw new Error(`page condition not reached within ${timeoutMs} ms`);
    await sleep(100);
  }
}
