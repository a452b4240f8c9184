// The hostile peer, run inside a Chromium page (injected with addScriptTag
// by tests/e2e/hostile/run.mjs). It speaks Shoal's real protocols:
//   - signaling: JSON over a WebSocket to the signal server (hello ->
//     welcome, join -> joined, relay offer/answer/candidate);
//   - WebRTC: it offers a data channel to each honest viewer through
//     `relay`; the viewer answers;
//   - the wire protocol on the data channel: [version=1][kind][body],
//     big-endian (swarm-proto/src/wire.rs).
// Each attack is one function of window.Hostile, run under a fresh signaling
// identity (a fresh WebSocket, so a fresh peer id: honest viewers ban the
// ids they drop). Every loop is bounded in count and time. Only loopback
// addresses are ever contacted (the URLs come from the test, and the page
// runs in a loopback-only network namespace).
(() => {
  'use strict';
  const H = (window.Hostile = {});
  const log = (m) => console.log(`[hostile] ${m}`);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const now = () => performance.now();
  function withTimeout(p, ms, what) {
    let t;
    return Promise.race([
      p,
      new Promise((_, rej) => {
        t = setTimeout(() => rej(new Error(`${what}: timed out after ${ms} ms`)), ms);
      }),
    ]).finally(() => clearTimeout(t));
  }
  const errStr = (e) => (e && e.message ? e.message : String(e));

  // Own candidate log, used when lib.mjs's recordCandidates init script is
  // absent (it records into the same array; duplicates do no harm).
  window.__shoalCandidates = window.__shoalCandidates || [];
  const recordCand = (c) => {
    if (c) window.__shoalCandidates.push(String(c));
  };
  const recordSdp = (sdp) => {
    for (const l of String(sdp || '').split(/\r?\n/)) if (l.startsWith('a=candidate:')) recordCand(l.slice(2));
  };

  // ------------------------------------------------------------------ wire
  const WIRE_VERSION = 1;
  const KIND = { hello: 1, bitfield: 2, have: 3, request: 4, piece: 5, cancel: 6, reject: 7, bye: 8 };
  const KIND_NAME = Object.fromEntries(Object.entries(KIND).map(([k, v]) => [v, k]));
  const wire = {
    hello(contentId, segments) {
      const id = new TextEncoder().encode(contentId);
      const b = new Uint8Array(3 + id.length + 4);
      b[0] = WIRE_VERSION;
      b[1] = KIND.hello;
      b[2] = id.length;
      b.set(id, 3);
      new DataView(b.buffer).setUint32(3 + id.length, segments);
      return b;
    },
    /** `has(i)` says whether bit i is set; MSB first. */
    bitfield(n, has) {
      const b = new Uint8Array(6 + Math.ceil(n / 8));
      b[0] = WIRE_VERSION;
      b[1] = KIND.bitfield;
      new DataView(b.buffer).setUint32(2, n);
      for (let i = 0; i < n; i++) if (has(i)) b[6 + (i >> 3)] |= 0x80 >> (i & 7);
      return b;
    },
    have(seg) {
      const b = new Uint8Array(6);
      b[0] = WIRE_VERSION;
      b[1] = KIND.have;
      new DataView(b.buffer).setUint32(2, seg);
      return b;
    },
    segPiece(kind, seg, piece, extra = 0) {
      const b = new Uint8Array(10 + extra);
      b[0] = WIRE_VERSION;
      b[1] = kind;
      const dv = new DataView(b.buffer);
      dv.setUint32(2, seg);
      dv.setUint32(6, piece);
      return b;
    },
    request: (seg, piece) => wire.segPiece(KIND.request, seg, piece),
    cancel: (seg, piece) => wire.segPiece(KIND.cancel, seg, piece),
    reject: (seg, piece) => wire.segPiece(KIND.reject, seg, piece),
    piece(seg, piece, data) {
      const b = wire.segPiece(KIND.piece, seg, piece, data.length);
      b.set(data, 10);
      return b;
    },
    bye: () => new Uint8Array([WIRE_VERSION, KIND.bye]),
    /** Decodes what an honest peer sends; { kind: 'bad', why } when malformed. */
    decode(buf) {
      const b = new Uint8Array(buf);
      if (b.length < 2 || b[0] !== WIRE_VERSION) return { kind: 'bad', why: `version/length ${b.length}` };
      const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
      const kind = KIND_NAME[b[1]];
      switch (kind) {
        case 'hello': {
          const n = b[2];
          const contentId = new TextDecoder().decode(b.subarray(3, 3 + n));
          return { kind, contentId, segments: dv.getUint32(3 + n) };
        }
        case 'bitfield': {
          const n = dv.getUint32(2);
          const has = [];
          for (let i = 0; i < n && 6 + (i >> 3) < b.length; i++) if (b[6 + (i >> 3)] & (0x80 >> (i & 7))) has.push(i);
          return { kind, bits: n, has };
        }
        case 'have':
          return { kind, seg: dv.getUint32(2) };
        case 'request':
        case 'cancel':
        case 'reject':
          return { kind, seg: dv.getUint32(2), piece: dv.getUint32(6) };
        case 'piece':
          return { kind, seg: dv.getUint32(2), piece: dv.getUint32(6), bytes: b.length - 10 };
        case 'bye':
          return { kind };
        default:
          return { kind: 'bad', why: `unknown kind ${b[1]}` };
      }
    },
  };
  H.wire = wire;

  // ------------------------------------------------------- content (HTTP)
  /** manifest: { content_id, piece_size, segments: [{ uri, size, duration_ms }] } */
  H.content = { manifest: null, manifestUrl: null, segs: new Map() };

  H.loadManifest = async (manifestUrl) => {
    const r = await fetch(manifestUrl, { cache: 'no-store' });
    if (!r.ok) throw new Error(`GET ${manifestUrl}: HTTP ${r.status}`);
    H.content.manifest = await r.json();
    H.content.manifestUrl = manifestUrl;
    const m = H.content.manifest;
    return { contentId: m.content_id, segments: m.segments.length, pieceSize: m.piece_size };
  };

  /** Fetches segments [from, to) from the seed's HTTP origin (real bytes). */
  H.prefetch = async (from, to, { timeoutMs = 30_000 } = {}) => {
    const m = H.content.manifest;
    const deadline = now() + timeoutMs;
    let bytes = 0;
    let n = 0;
    for (let s = Math.max(0, from); s < Math.min(to, m.segments.length); s++) {
      if (H.content.segs.has(s)) continue;
      if (now() > deadline) break;
      const url = new URL(m.segments[s].uri, H.content.manifestUrl).toString();
      const r = await withTimeout(fetch(url), 10_000, `GET ${url}`);
      if (!r.ok) throw new Error(`GET ${url}: HTTP ${r.status}`);
      const data = new Uint8Array(await r.arrayBuffer());
      if (data.length !== m.segments[s].size) throw new Error(`${url}: ${data.length} bytes, manifest says ${m.segments[s].size}`);
      H.content.segs.set(s, data);
      bytes += data.length;
      n++;
    }
    return { segments: n, bytes, held: [...H.content.segs.keys()].sort((a, b) => a - b) };
  };

  const pieceCount = (s) => Math.ceil(H.content.manifest.segments[s].size / H.content.manifest.piece_size);
  function pieceData(s, p) {
    const ps = H.content.manifest.piece_size;
    const seg = H.content.segs.get(s);
    return seg ? seg.subarray(p * ps, Math.min((p + 1) * ps, seg.length)) : null;
  }

  // ------------------------------------------------------------ signaling
  class Signal {
    constructor(url, swarm) {
      this.url = url;
      this.swarm = swarm;
      this.ws = null;
      this.peerId = null;
      this.joined = null;
      this.relayHandlers = new Map();
      this.waiters = [];
      this.errors = [];
      this.relaysIn = { offer: 0, answer: 0, candidate: 0 };
      this.answersFrom = new Map();
      this.closed = false;
      this.hb = null;
    }
    _onMessage(text) {
      let msg;
      try {
        msg = JSON.parse(text);
      } catch {
        this.errors.push(`unparsable frame ${String(text).slice(0, 80)}`);
        return;
      }
      if (msg.type === 'relay') {
        const k = msg.signal && msg.signal.kind;
        if (k in this.relaysIn) this.relaysIn[k]++;
        if (k === 'answer') this.answersFrom.set(msg.from, (this.answersFrom.get(msg.from) || 0) + 1);
        if (k === 'candidate') recordCand(msg.signal.candidate);
        if (k === 'offer' || k === 'answer') recordSdp(msg.signal.sdp);
        const h = this.relayHandlers.get(msg.from);
        if (h) h(msg.signal);
        return;
      }
      if (msg.type === 'error') this.errors.push(`${msg.code}: ${msg.message}`);
      for (const w of this.waiters.filter((w) => w.type === msg.type)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(msg);
      }
    }
    next(type, ms) {
      let w;
      const p = new Promise((resolve) => {
        w = { type, resolve };
        this.waiters.push(w);
      });
      return withTimeout(p, ms, `waiting for ${type}`).catch((e) => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        throw e;
      });
    }
    send(obj) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify(obj));
        return true;
      }
      return false;
    }
    /** Opens the socket, says hello as a viewer, joins the swarm. */
    async open({ timeoutMs = 10_000 } = {}) {
      this.ws = new WebSocket(this.url);
      this.ws.onmessage = (e) => typeof e.data === 'string' && this._onMessage(e.data);
      this.ws.onclose = () => {
        this.closed = true;
        clearInterval(this.hb);
      };
      await withTimeout(
        new Promise((res, rej) => {
          this.ws.onopen = res;
          this.ws.onerror = () => rej(new Error(`WebSocket ${this.url} failed to open`));
        }),
        timeoutMs,
        'websocket open',
      );
      const welcome = this.next('welcome', timeoutMs);
      this.send({ type: 'hello', role: 'viewer' });
      this.peerId = (await welcome).peer_id;
      const joined = this.next('joined', timeoutMs);
      this.send({ type: 'join', swarm: this.swarm });
      this.joined = await joined;
      // The signal server drops clients silent for 15 s.
      this.hb = setInterval(() => this.send({ type: 'heartbeat' }), 4000);
      return this;
    }
    relay(to, signal) {
      return this.send({ type: 'relay', swarm: this.swarm, to, signal });
    }
    close() {
      clearInterval(this.hb);
      if (this.ws && !this.closed) {
        try {
          this.send({ type: 'leave', swarm: this.swarm });
          this.ws.close();
        } catch {}
      }
      this.closed = true;
    }
  }
  H.Signal = Signal;

  // ------------------------------------------------------------ WebRTC
  /**
   * Offers a data channel to `to` through `sig`; resolves once the channel
   * is open (or rejects). `maxMessageSize` rewrites a=max-message-size in
   * the answer before applying it (lifts Chromium's own send limit).
   */
  async function dial(sig, to, { maxMessageSize = null, timeoutMs = 10_000 } = {}) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    const dc = pc.createDataChannel('shoal');
    dc.binaryType = 'arraybuffer';
    const conn = {
      to,
      pc,
      dc,
      opened: false,
      openedAt: null,
      closed: false,
      closedAt: null,
      got: {},
      gotText: 0,
      onMessage: null,
      sendErrors: [],
      sent: 0,
      sentBytes: 0,
    };
    pc.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate) {
        recordCand(e.candidate.candidate);
        sig.relay(to, { kind: 'candidate', candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex });
      }
    };
    const markClosed = () => {
      if (!conn.closed) {
        conn.closed = true;
        conn.closedAt = now();
      }
    };
    pc.onconnectionstatechange = () => {
      if (['failed', 'closed', 'disconnected'].includes(pc.connectionState)) markClosed();
    };
    dc.onclose = markClosed;
    dc.onmessage = (e) => {
      if (typeof e.data === 'string') {
        conn.gotText++;
        return;
      }
      const m = wire.decode(e.data);
      conn.got[m.kind] = (conn.got[m.kind] || 0) + 1;
      if (conn.onMessage) {
        try {
          conn.onMessage(m);
        } catch (err) {
          conn.sendErrors.push(errStr(err));
        }
      }
    };
    let answerResolve;
    const answered = new Promise((r) => (answerResolve = r));
    const early = [];
    let remoteSet = false;
    sig.relayHandlers.set(to, (s) => {
      if (s.kind === 'answer') answerResolve(s.sdp);
      else if (s.kind === 'candidate') {
        const c = { candidate: s.candidate, sdpMid: s.sdpMid ?? null, sdpMLineIndex: s.sdpMLineIndex ?? null };
        if (remoteSet) pc.addIceCandidate(c).catch(() => {});
        else if (early.length < 64) early.push(c);
      }
    });
    const opened = new Promise((res) => {
      dc.onopen = () => {
        conn.opened = true;
        conn.openedAt = now();
        res();
      };
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      sig.relay(to, { kind: 'offer', sdp: pc.localDescription.sdp });
      let sdp = await withTimeout(answered, timeoutMs, `answer from ${to}`);
      if (maxMessageSize) {
        sdp = /a=max-message-size:\d+/.test(sdp)
          ? sdp.replace(/a=max-message-size:\d+/g, `a=max-message-size:${maxMessageSize}`)
          : sdp.replace(/(a=sctp-port:\d+\r?\n)/, `$1a=max-message-size:${maxMessageSize}\r\n`);
      }
      await pc.setRemoteDescription({ type: 'answer', sdp });
      remoteSet = true;
      for (const c of early) await pc.addIceCandidate(c).catch(() => {});
      await withTimeout(opened, timeoutMs, `data channel to ${to}`);
    } catch (e) {
      conn.error = errStr(e);
      markClosed();
    }
    return conn;
  }

  function send(conn, data) {
    if (conn.closed || conn.dc.readyState !== 'open') return false;
    try {
      conn.dc.send(data);
      conn.sent++;
      conn.sentBytes += typeof data === 'string' ? data.length : data.byteLength;
      return true;
    } catch (e) {
      if (conn.sendErrors.length < 8) conn.sendErrors.push(errStr(e));
      return false;
    }
  }

  /** Waits (bounded) until the drain of the channel's send buffer below `bytes`. */
  async function drained(conn, bytes, ms) {
    const end = now() + ms;
    while (!conn.closed && conn.dc.bufferedAmount > bytes && now() < end) await sleep(20);
  }

  /** Waits until every opened connection was closed by the victim, or `ms`. */
  async function untilAllClosed(conns, ms) {
    const end = now() + ms;
    while (now() < end && conns.some((c) => c.opened && !c.closed)) await sleep(100);
  }

  // ---------------------------------------------------------- identities
  H.identities = [];
  /** A fresh attacker identity: new WebSocket, new peer id, joined. */
  async function identity(env, name) {
    const sig = new Signal(env.signalWs, env.swarm);
    await sig.open();
    H.identities.push(sig);
    log(`${name}: identity ${sig.peerId} (${sig.joined.peers.length} peers listed)`);
    return sig;
  }

  async function dialAll(sig, victims, opts) {
    const conns = await Promise.all(victims.map((v) => dial(sig, v, opts)));
    return conns;
  }

  function greet(conn, { bitfield = 'none' } = {}) {
    const m = H.content.manifest;
    const n = m.segments.length;
    send(conn, wire.hello(m.content_id, n));
    if (bitfield === 'held') send(conn, wire.bitfield(n, (i) => H.content.segs.has(i)));
    else if (bitfield === 'full') send(conn, wire.bitfield(n, () => true));
    else if (bitfield === 'empty') send(conn, wire.bitfield(n, () => false));
  }

  function summary(name, sig, conns, extra = {}) {
    const reached = conns.filter((c) => c.opened);
    const r = {
      name,
      peerId: sig.peerId,
      misbehaves: true,
      offered: conns.length,
      reached: reached.map((c) => c.to),
      closedBy: reached.filter((c) => c.closed).map((c) => c.to),
      closeAfterMs: reached.filter((c) => c.closed).map((c) => Math.round(c.closedAt - c.openedAt)),
      dialErrors: conns.filter((c) => c.error).map((c) => `${c.to}: ${c.error}`),
      sent: conns.reduce((a, c) => a + c.sent, 0),
      sentBytes: conns.reduce((a, c) => a + c.sentBytes, 0),
      got: conns.reduce((a, c) => {
        for (const [k, v] of Object.entries(c.got)) a[k] = (a[k] || 0) + v;
        return a;
      }, {}),
      sendErrors: [...new Set(conns.flatMap((c) => c.sendErrors))].slice(0, 4),
      signalErrors: sig.errors.slice(0, 4),
      ...extra,
    };
    return r;
  }

  function finish(sig, conns) {
    for (const c of conns) {
      try {
        c.dc.close();
        c.pc.close();
      } catch {}
    }
    sig.close();
  }

  // --------------------------------------------------------------- attacks
  // env: { signalWs, swarm, victims: [peer ids of honest viewers], seeds: [seed peer ids] }

  /**
   * 1. Corrupt pieces. Holds real segments (H.prefetch), announces them, and
   * answers requests with the right piece, except that it flips a byte in
   * about one piece of three. For the first `mixedMs` it rejects odd pieces
   * the first time they are asked for, so the victim takes them from honest
   * viewers or the seed: segments are then assembled from several
   * contributors and the victim must find the liar against the origin's
   * copy (smart ban) without blaming the others. After that it serves every
   * piece (a segment may then come from it alone: blame is immediate).
   */
  H.corruptPieces = async (env, { durationMs = 20_000, mixedMs = 12_000, corruptEvery = 3 } = {}) => {
    const sig = await identity(env, 'corrupt');
    const conns = await dialAll(sig, env.victims);
    const live = conns.filter((c) => c.opened);
    const st = { served: 0, corrupted: 0, rejected: 0, mixedRejects: 0, mixedServed: 0 };
    const corruptSegs = new Set();
    let mixed = true;
    for (const c of live) {
      const askedOnce = new Set();
      c.onMessage = (m) => {
        if (m.kind !== 'request') return;
        const d = pieceData(m.seg, m.piece);
        if (!d) {
          st.rejected++;
          return send(c, wire.reject(m.seg, m.piece));
        }
        const key = m.seg * 65536 + m.piece;
        if (mixed && m.piece % 2 === 1 && !askedOnce.has(key) && askedOnce.size < 100_000) {
          askedOnce.add(key);
          st.mixedRejects++;
          return send(c, wire.reject(m.seg, m.piece));
        }
        let out = d;
        if ((m.seg + m.piece) % corruptEvery === 0) {
          out = d.slice();
          out[out.length >> 1] ^= 0xff;
          st.corrupted++;
          corruptSegs.add(m.seg);
        }
        st.served++;
        if (mixed) st.mixedServed++;
        send(c, wire.piece(m.seg, m.piece, out));
      };
      greet(c, { bitfield: 'held' });
    }
    await untilAllClosed(conns, Math.min(mixedMs, durationMs));
    mixed = false;
    const mixedPhase = { closedBy: live.filter((c) => c.closed).length, served: st.mixedServed, rejected: st.mixedRejects };
    await untilAllClosed(conns, Math.max(0, durationMs - mixedMs));
    const r = summary('corrupt_pieces', sig, conns, {
      served: st.served,
      corrupted: st.corrupted,
      rejected: st.rejected,
      corruptSegments: corruptSegs.size,
      mixedPhase,
    });
    finish(sig, conns);
    return r;
  };

  /** 2. Unsolicited pieces: real-sized Piece messages nobody asked for. */
  H.unsolicitedPieces = async (env, { count = 64, durationMs = 8000 } = {}) => {
    const sig = await identity(env, 'unsolicited');
    const conns = await dialAll(sig, env.victims);
    const held = [...H.content.segs.keys()];
    let pieces = 0;
    for (const c of conns.filter((c) => c.opened)) {
      greet(c, { bitfield: 'empty' });
      for (let i = 0; i < count && !c.closed; i++) {
        const s = held.length ? held[(i * 7) % held.length] : 0;
        const p = held.length ? i % pieceCount(s) : 0;
        const d = pieceData(s, p) || new Uint8Array(H.content.manifest.piece_size);
        if (send(c, wire.piece(s, p, d))) pieces++;
        await drained(c, 1 << 20, 1000);
      }
    }
    await untilAllClosed(conns, durationMs);
    const r = summary('unsolicited_pieces', sig, conns, { pieces });
    // A dropped id must not get back in: dial the viewers that closed on us
    // again with the same identity (they answer, or not; the channel must
    // not stay open).
    const again = await dialAll(sig, r.closedBy, { timeoutMs: 4000 });
    for (const c of again.filter((c) => c.opened)) greet(c, { bitfield: 'empty' });
    await untilAllClosed(again, 3000);
    r.redial = { tried: again.length, opened: again.filter((c) => c.opened).length, stillOpen: again.filter((c) => c.opened && !c.closed).length };
    finish(sig, [...conns, ...again]);
    return r;
  };

  /**
   * 3. A full bitfield it cannot serve: claims every segment, then leaves
   * every other request unanswered and rejects the rest.
   */
  H.falseClaims = async (env, { durationMs = 25_000 } = {}) => {
    const sig = await identity(env, 'false-claims');
    const conns = await dialAll(sig, env.victims);
    let requests = 0;
    let rejects = 0;
    for (const c of conns.filter((c) => c.opened)) {
      c.onMessage = (m) => {
        if (m.kind !== 'request') return;
        if (requests++ % 2 === 0) {
          rejects++;
          send(c, wire.reject(m.seg, m.piece));
        }
      };
      greet(c, { bitfield: 'full' });
    }
    await untilAllClosed(conns, durationMs);
    const r = summary('false_claims', sig, conns, { requests, rejects });
    finish(sig, conns);
    return r;
  };

  /** 4. A Reject flood: thousands of 10-byte Rejects for nothing asked. */
  H.rejectFlood = async (env, { count = 5000, durationMs = 8000 } = {}) => {
    const sig = await identity(env, 'reject-flood');
    const conns = await dialAll(sig, env.victims);
    const n = H.content.manifest.segments.length;
    let rejects = 0;
    for (const c of conns.filter((c) => c.opened)) {
      greet(c, { bitfield: 'empty' });
      for (let i = 0; i < count && !c.closed; i++) {
        const s = i % n;
        if (send(c, wire.reject(s, i % pieceCount(s)))) rejects++;
        if (i % 500 === 499) await drained(c, 256 << 10, 1000);
      }
    }
    await untilAllClosed(conns, durationMs);
    const r = summary('reject_flood', sig, conns, { rejects });
    finish(sig, conns);
    return r;
  };

  /** 5. Text messages on the data channel (the player reads binary only). */
  H.textMessages = async (env, { durationMs = 8000 } = {}) => {
    const sig = await identity(env, 'text');
    const conns = await dialAll(sig, env.victims);
    let texts = 0;
    for (const c of conns.filter((c) => c.opened)) {
      greet(c, { bitfield: 'empty' });
      for (const t of ['4000000000', '{"kind":"piece"}', '\u0001\u0005']) if (send(c, t)) texts++;
    }
    await untilAllClosed(conns, durationMs);
    const r = summary('text_messages', sig, conns, { texts });
    finish(sig, conns);
    return r;
  };

  /**
   * 6. 1 MiB binary messages. Chromium refuses to send more than the
   * remote's a=max-message-size; the attacker raises it in the answer it
   * applies. Chromium still caps sends at its own limit (RTCSctpTransport
   * maxMessageSize, 256 KiB): then the largest message it can send is sent
   * instead (still four times the wire protocol's limit). What happened is
   * recorded.
   */
  H.hugeMessages = async (env, { size = 1 << 20, durationMs = 8000 } = {}) => {
    const sig = await identity(env, 'huge');
    const conns = await dialAll(sig, env.victims, { maxMessageSize: 4 << 20 });
    const out = { mib: 0, largest: 0, largestBytes: 0, sctpMaxMessageSize: null, mibErrors: [] };
    const big = (n) => {
      // A Piece header (segment 0, piece 0) on an n-byte message.
      const m = wire.segPiece(KIND.piece, 0, 0, n - 10);
      for (let i = 10; i < m.length; i += 4096) m[i] = i & 0xff;
      return m;
    };
    for (const c of conns.filter((c) => c.opened)) {
      const max = c.pc.sctp ? c.pc.sctp.maxMessageSize : null;
      out.sctpMaxMessageSize = max;
      greet(c, { bitfield: 'empty' });
      try {
        c.dc.send(big(size));
        out.mib++;
        c.sent++;
        c.sentBytes += size;
        continue;
      } catch (e) {
        if (out.mibErrors.length < 2) out.mibErrors.push(errStr(e));
      }
      if (max && max > 65_546 && send(c, big(Math.min(max, size)))) {
        out.largest++;
        out.largestBytes = Math.min(max, size);
      }
    }
    await untilAllClosed(conns, durationMs);
    const r = summary('huge_messages', sig, conns, {
      ...out,
      size,
      possibleFromBrowser: out.mib > 0,
      misbehaves: out.mib + out.largest > 0,
    });
    finish(sig, conns);
    return r;
  };

  /**
   * 7. Offers from `count` fresh peer ids: as many WebSockets, each joining
   * the swarm and relaying one real SDP offer (made once, reused) to every
   * honest viewer and to the seed. Held open `holdMs`, then closed.
   */
  // More than about 10 WebSocket handshakes pending at once to one host make
  // Chromium throttle them (100 sockets: 1.2 s with 8 at once, 18 s with 16).
  H.offerFlood = async (env, { count = 200, concurrency = 8, holdMs = 8000, openTimeoutMs = 30_000 } = {}) => {
    const pc0 = new RTCPeerConnection({ iceServers: [] });
    pc0.createDataChannel('shoal');
    await pc0.setLocalDescription(await pc0.createOffer());
    await withTimeout(
      new Promise((res) => {
        if (pc0.iceGatheringState === 'complete') return res();
        pc0.onicegatheringstatechange = () => pc0.iceGatheringState === 'complete' && res();
      }),
      5000,
      'ICE gathering of the flood offer',
    ).catch(() => {});
    const offer = pc0.localDescription.sdp;
    recordSdp(offer);
    const targets = [...env.victims, ...env.seeds];
    const sigs = [];
    const openErrors = [];
    let offers = 0;
    const deadline = now() + openTimeoutMs;
    let next = 0;
    const worker = async () => {
      while (next < count && now() < deadline) {
        const i = next++;
        const sig = new Signal(env.signalWs, env.swarm);
        try {
          await sig.open({ timeoutMs: 5000 });
          sigs.push(sig);
          for (const t of targets) if (sig.relay(t, { kind: 'offer', sdp: offer })) offers++;
        } catch (e) {
          sig.close();
          if (openErrors.length < 8) openErrors.push(`socket ${i}: ${errStr(e)}`);
          else openErrors.push(null);
        }
      }
    };
    const t0 = now();
    await Promise.all(Array.from({ length: concurrency }, worker));
    const openMs = Math.round(now() - t0);
    log(`offer flood: ${sigs.length} identities, ${offers} offers sent in ${openMs} ms`);
    await sleep(holdMs);
    const answers = { viewers: 0, seeds: 0 };
    const answeredBy = new Set();
    const signalErrors = [];
    for (const s of sigs) {
      for (const [from, n] of s.answersFrom) {
        answeredBy.add(from);
        if (env.seeds.includes(from)) answers.seeds += n;
        else answers.viewers += n;
      }
      for (const e of s.errors) if (signalErrors.length < 6 && !signalErrors.includes(e)) signalErrors.push(e);
    }
    const candidates = sigs.reduce((a, s) => a + s.relaysIn.candidate, 0);
    const closedEarly = sigs.filter((s) => s.closed).length;
    for (const s of sigs) s.close();
    pc0.close();
    return {
      name: 'offer_flood',
      misbehaves: false,
      identities: sigs.map((s) => s.peerId),
      sockets: sigs.length,
      openMs,
      socketsFailed: openErrors.length,
      openErrors: openErrors.filter(Boolean),
      offers,
      targets: targets.length,
      answers,
      answeredBy: [...answeredBy],
      candidatesIn: candidates,
      closedByServer: closedEarly,
      signalErrors,
    };
  };

  /** Closes every identity still open. */
  H.closeAll = () => {
    for (const s of H.identities) s.close();
  };
  log('attacker loaded');
})();
