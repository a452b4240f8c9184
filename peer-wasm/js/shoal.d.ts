// Types for the Shoal player script (shoal.js).

export interface ShoalOptions {
  /** URL of the Shoal manifest: a video on demand (`.../vod/ID/manifest.json` on a seed) or a live channel (`.../live/NAME/live.json`). */
  src: string;
  /** Signal server WebSocket URL; defaults to `ws(s)://<page host>/ws`. */
  signal?: string;
  /** Viewer token issued by the website's backend. */
  token?: string;
  /** Live: the latency to hold behind the encoder, in ms (default 2000; at least a segment plus 800 ms is kept whatever is asked). */
  liveLatencyMs?: number;
  /** Load the live build (live channels only); by default it is loaded when `src` ends in `/live.json`. */
  live?: boolean;
  /** Log peer events to the console. */
  debug?: boolean;
  /**
   * STUN/TURN servers for peer connections, as RTCPeerConnection takes
   * them; used instead of the ones the signal server hands out (its
   * `--stun`/`--turn`, with short-lived TURN credentials).
   */
  iceServers?: RTCIceServer[];
  /** "relay": connect to peers only through TURN (default "all"). */
  iceTransportPolicy?: "all" | "relay";
  /**
   * `performance.now()` when playback was asked for: startup counts from
   * here. `Shoal.attach` and `<shoal-player>` set it to the moment they are
   * called (so loading the Wasm counts); with `new Player` it defaults to
   * the call to `start()`. At most 10 minutes old.
   */
  startedAt?: number;
  /**
   * A Promise of the manifest's text (null when it could not be fetched):
   * `Shoal.attach` and `<shoal-player>` start fetching `src` while the Wasm
   * loads and pass it here; the player fetches `src` itself without it.
   */
  manifestPrefetch?: Promise<string | null>;
}

/** Sizes of the engine's bounded tables. */
export interface ShoalTables {
  peers: number;
  partialSegments: number;
  storedSegments: number;
  storedBytes: number;
  /** Reject back-off entries, summed over peers. */
  rejects: number;
  /** Peer ids banned for misbehaving. */
  banned: number;
  pendingLoads: number;
  /** Failed segments kept to find who sent the bad bytes. */
  suspects: number;
}

/** How this viewer's peer connections went. */
export interface ShoalConnections {
  attempted: number;
  connected: number;
  failed: number;
  /** Open connections by their selected candidate pair now (the "highest" of its two candidate types: same network, through NAT (srflx, prflx), or through TURN (relay)); the pair can change while connected, and is looked at every 2 s. */
  host: number;
  srflx: number;
  prflx: number;
  relay: number;
  /** Creation to open data channel, ms, of the most recent (up to 32). */
  connectMs: number[];
}

/** Every key is present in every state (zeros and nulls before start). */
export interface ShoalStats {
  /** "idle" | "starting" | "running" | "destroyed" (also after a failed start). */
  state: "idle" | "starting" | "running" | "destroyed";
  /** Bytes received directly from other viewers over WebRTC (the free, P2P part). */
  bytesFromPeers: number;
  /** Bytes received from other viewers through a TURN relay (the operator pays for them; not in bytesFromPeers). */
  bytesFromRelay: number;
  /** Bytes received from seed servers over WebRTC. */
  bytesFromSeed: number;
  /** Bytes fetched over HTTP (init segment included). */
  bytesFromHttp: number;
  /** Bytes sent to other viewers. */
  bytesUploaded: number;
  /** Peers connected and speaking the protocol. */
  peers: number;
  /** RTCPeerConnections alive, pending ones included. */
  peerConnections: number;
  /** From `options.startedAt` (`Shoal.attach`, the element connecting, or start()) to the first `playing` event; null until then. */
  startupMs: number | null;
  stalls: number;
  stalledMs: number;
  /** Segments whose SHA-256 matched the manifest. */
  segmentsVerified: number;
  /** Segments handed to the media buffer (always verified first). */
  segmentsAppended: number;
  verifyFailures: number;
  /** Live: wall clock (corrected by the offset learned from the signal server) minus the capture time of the frame at the playhead, as hls.js's `playingDate`; null until known, and for a video on demand. */
  latencyMs: number | null;
  /** Live: Ed25519 signatures (segment descriptions, the init segment) that checked out against the channel key. */
  signaturesVerified: number;
  peersDropped: number;
  /** Ids of the most recent peers dropped for misbehaving (up to 64, newest last). */
  droppedPeers: string[];
  /** Requests of ours that peers refused. */
  requestsRejected: number;
  /** Pieces that arrived without a request of ours (discarded). */
  unsolicitedPieces: number;
  /** Verified segments held for playback and sharing, and their bytes. */
  storedSegments: number;
  storedBytes: number;
  /** Segments of a video on demand (0 for a live channel). */
  segments: number;
  currentTime: number;
  /** Seconds of media in the video's buffer. */
  bufferedSeconds: number;
  peerId: string | null;
  /** Whether the signal server connection is open (it reconnects by itself). */
  signalConnected: boolean;
  /** HTTP origins known for this video (the manifest's and the seeds'). */
  httpOrigins: number;
  /** Size of the Wasm memory, in bytes. */
  wasmMemoryBytes: number;
  tables: ShoalTables;
  /** Peer connection attempts that ended (open data channel or failure). */
  connections: ShoalConnections;
  /** The most recent ICE server errors ("url: code text", e.g. 401 for a wrong TURN credential, 701 for an unreachable server); up to 8. */
  iceErrors: string[];
  /** A fatal playback error, if any (the player then stops). */
  error: string | null;
}

export interface ShoalPlayer {
  /**
   * Starts playback (Shoal.attach calls it). Accepted once: a second call
   * rejects ("start() was already called"); destroy() during start makes it
   * reject ("player destroyed during start()").
   */
  start(): Promise<void>;
  stats(): ShoalStats;
  /** Leaves the swarm and frees every connection and callback. Safe to call twice. */
  destroy(): void;
}

export interface ShoalApi {
  /** Loads the Wasm peer: the live build (live channels only) when `live` is true, else the on-demand build. */
  ready(live?: boolean): Promise<unknown>;
  attach(video: HTMLVideoElement, options: ShoalOptions): Promise<ShoalPlayer>;
}

declare global {
  interface Window {
    Shoal: ShoalApi;
  }
  interface HTMLElementTagNameMap {
    "shoal-player": HTMLElement & {
      /** The running player (null while it starts, or without src). */
      readonly player: ShoalPlayer | null;
      /** Resolves once the current player started; null without src. */
      readonly ready: Promise<ShoalPlayer> | null;
      /** Stats of the current player, starting or running. */
      stats(): ShoalStats | null;
    };
  }
}
