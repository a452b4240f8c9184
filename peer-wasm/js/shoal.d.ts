// Types for the Shoal player script (shoal.js).

export interface ShoalOptions {
  /** URL of the video's Shoal manifest (`.../manifest.json` on a seed). */
  src: string;
  /** Signal server WebSocket URL; defaults to `ws(s)://<page host>/ws`. */
  signal?: string;
  /** Viewer token issued by the website's backend. */
  token?: string;
  /** Log peer events to the console. */
  debug?: boolean;
}

export interface ShoalStats {
  /** Bytes received from other viewers over WebRTC. */
  bytesFromPeers: number;
  /** Bytes received from seed servers over WebRTC. */
  bytesFromSeed: number;
  /** Bytes fetched over HTTP (init segment included). */
  bytesFromHttp: number;
  /** Bytes sent to other viewers. */
  bytesUploaded: number;
  /** Open peer connections. */
  peers: number;
  /** From attach() to the first `playing` event; null until then. */
  startupMs: number | null;
  stalls: number;
  stalledMs: number;
  /** Segments whose SHA-256 matched the manifest. */
  segmentsVerified: number;
  /** Segments handed to the media buffer (always verified first). */
  segmentsAppended: number;
  verifyFailures: number;
  peersDropped: number;
  segments: number;
  currentTime: number;
  peerId: string | null;
  /** A fatal playback error, if any. */
  error: string | null;
}

export interface ShoalPlayer {
  stats(): ShoalStats;
  /** Leaves the swarm and frees every connection and callback. */
  destroy(): void;
}

export interface ShoalApi {
  ready(): Promise<unknown>;
  attach(video: HTMLVideoElement, options: ShoalOptions): Promise<ShoalPlayer>;
}

declare global {
  interface Window {
    Shoal: ShoalApi;
  }
  interface HTMLElementTagNameMap {
    "shoal-player": HTMLElement & { readonly player: ShoalPlayer | null; readonly ready: Promise<ShoalPlayer>; stats(): ShoalStats | null };
  }
}
