// Shoal player loader: <script src=".../shoal.js"></script>
// Loads the Wasm peer that sits beside this file, then offers
//   Shoal.attach(videoElement, { src, signal, token }) -> Promise<Player>
//   <shoal-player src="manifest URL" signal="ws://host/ws"></shoal-player>
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(".", script ? script.src : location.href).href;
  var ready = null;
  function load() {
    if (!ready) {
      ready = import(base + "shoal_peer.js").then(function (m) {
        return m.default({ module_or_path: base + "shoal_peer_bg.wasm" }).then(function () { return m; });
      });
    }
    return ready;
  }

  var Shoal = {
    /** Loads the Wasm peer (done automatically by attach). */
    ready: load,
    /** Plays `options.src` (a Shoal manifest URL) in `video`, peer to peer. */
    attach: function (video, options) {
      return load().then(function (m) {
        var player = new m.Player(video, options || {});
        return player.start().then(function () { return player; }, function (e) {
          player.destroy();
          throw e;
        });
      });
    },
  };
  window.Shoal = Shoal;

  if (window.customElements && !customElements.get("shoal-player")) {
    class ShoalPlayer extends HTMLElement {
      static get observedAttributes() { return ["src", "signal"]; }
      connectedCallback() { this._start(); }
      disconnectedCallback() { this._stop(); }
      attributeChangedCallback() { if (this.isConnected) { this._stop(); this._start(); } }
      get player() { return this._player || null; }
      /** Resolves to the Player once it started. */
      get ready() { return this._ready; }
      stats() { return this._player ? this._player.stats() : null; }
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
        var opts = { src: new URL(src, location.href).href };
        if (this.getAttribute("signal")) opts.signal = this.getAttribute("signal");
        if (this.getAttribute("token")) opts.token = this.getAttribute("token");
        this._ready = Shoal.attach(video, opts).then(function (p) {
          self._player = p;
          self.dispatchEvent(new CustomEvent("shoal-ready", { detail: p }));
          return p;
        }, function (e) {
          self.dispatchEvent(new CustomEvent("shoal-error", { detail: String(e) }));
          console.error("[shoal]", e);
          throw e;
        });
      }
      _stop() {
        if (this._player) this._player.destroy();
        this._player = null;
        this._ready = null;
      }
    }
    customElements.define("shoal-player", ShoalPlayer);
  }
})();
