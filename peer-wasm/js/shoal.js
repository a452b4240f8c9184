// Shoal player loader: <script src=".../shoal.js"></script>
// Loads the Wasm peer that sits beside this file, then offers
//   Shoal.attach(videoElement, { src, signal, token }) -> Promise<Player>
//   <shoal-player src="manifest URL" signal="ws://host/ws"></shoal-player>
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(".", script ? script.src : location.href).href;
  // Two builds of the peer, one engine each: videos on demand, and live
  // channels. Each is fetched and compiled once, when first needed.
  var ready = {};
  function load(live) {
    var name = live ? "shoal_peer_live" : "shoal_peer";
    if (!ready[name]) {
      ready[name] = import(base + name + ".js").then(function (m) {
        return m.default({ module_or_path: base + name + "_bg.wasm" }).then(function () { return m; });
      });
    }
    return ready[name];
  }
  // A live channel's manifest is `.../live.json` (options.live overrides).
  function isLive(opts) {
    if (opts.live != null) return !!opts.live;
    try {
      return /\/live\.json$/.test(new URL(opts.src, location.href).pathname);
    } catch (e) {
      return false;
    }
  }

  // Creates a player, hands it to `created` (which may refuse it: the
  // player is then destroyed) and starts it. A player whose start fails is
  // destroyed.
  // Startup counts from here (options.startedAt, a performance.now() time),
  // so loading and compiling the Wasm count too.
  function begin(video, options, created) {
    var opts = Object.assign({}, options || {});
    if (opts.startedAt == null && window.performance) opts.startedAt = performance.now();
    // The manifest is fetched while the Wasm compiles (the player fetches
    // it again itself if this fails).
    if (opts.src && opts.manifestPrefetch == null && window.fetch) {
      try {
        opts.manifestPrefetch = fetch(new URL(opts.src, location.href).href).then(function (r) {
          return r.ok ? r.text() : null;
        }).catch(function () { return null; });
      } catch (e) {}
    }
    return load(isLive(opts)).then(function (m) {
      var player = new m.Player(video, opts);
      if (created && !created(player)) {
        player.destroy();
        throw new Error("Shoal: player destroyed during start()");
      }
      return player.start().then(function () { return player; }, function (e) {
        player.destroy();
        throw e;
      });
    });
  }

  var Shoal = {
    /** Loads the Wasm peer (done automatically by attach); `live` picks the live build (live channels only) over the on-demand one. */
    ready: function (live) { return load(!!live); },
    /** Plays `options.src` (a Shoal manifest URL) in `video`, peer to peer. */
    attach: function (video, options) { return begin(video, options); },
  };
  window.Shoal = Shoal;

  if (window.customElements && !customElements.get("shoal-player")) {
    // At most one player runs per element. Every (re)start bumps a
    // generation; a player of an older generation is destroyed as soon as
    // it exists, even if its start resolves after the change.
    class ShoalPlayer extends HTMLElement {
      constructor() {
        super();
        this._gen = 0;
        this._current = null; // the newest player, starting or running
        this._player = null; // the same once started
        this._ready = null;
      }
      static get observedAttributes() { return ["src", "signal", "token"]; }
      connectedCallback() { this._start(); }
      disconnectedCallback() { this._stop(); }
      attributeChangedCallback() { if (this.isConnected) { this._stop(); this._start(); } }
      /** The running player, or null. */
      get player() { return this._player; }
      /** Resolves to the Player once it started. */
      get ready() { return this._ready; }
      stats() { return this._current ? this._current.stats() : null; }
      _start() {
        var src = this.getAttribute("src");
        if (!src || this._ready) return;
        var video = this.querySelector("video");
        if (!video) {
          video = document.createElement("video");
          video.controls = true;
          video.muted = true;
          video.autoplay = true;
          video.playsInline = true;
          video.style.width = "100%";
          this.appendChild(video);
        }
        var self = this;
        var gen = ++this._gen;
        var opts = { src: new URL(src, location.href).href };
        if (this.getAttribute("signal")) opts.signal = this.getAttribute("signal");
        if (this.getAttribute("token")) opts.token = this.getAttribute("token");
        var current = function () { return gen === self._gen; };
        this._ready = begin(video, opts, function (p) {
          if (!current()) return false;
          self._current = p;
          return true;
        }).then(function (p) {
          if (!current()) {
            p.destroy();
            throw new Error("Shoal: player replaced during start()");
          }
          self._player = p;
          self.dispatchEvent(new CustomEvent("shoal-ready", { detail: p }));
          return p;
        }, function (e) {
          if (current()) {
            self._current = null;
            self.dispatchEvent(new CustomEvent("shoal-error", { detail: String(e) }));
            console.error("[shoal]", e);
          }
          throw e;
        });
        // Failures are reported through shoal-error; a caller awaiting
        // `ready` still sees the rejection.
        this._ready.catch(function () {});
      }
      _stop() {
        this._gen++;
        var p = this._current;
        this._current = null;
        this._player = null;
        this._ready = null;
        if (p) p.destroy();
      }
    }
    customElements.define("shoal-player", ShoalPlayer);
  }
})();
