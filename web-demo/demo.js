// Demo page logic: lists the seed's videos and live channels, embeds
// <shoal-player>, and shows its statistics once a second.
(function () {
  "use strict";
  var params = new URLSearchParams(location.search);
  var seed = params.get("seed") || location.protocol + "//" + location.hostname + ":8081";
  var box = document.getElementById("player-box");
  var hint = document.getElementById("hint");

  function mb(n) { return (n / 1e6).toFixed(2) + " MB"; }

  // entry.manifest: a VOD manifest.json or a live channel's live.json.
  function play(entry) {
    box.innerHTML = "";
    var el = document.createElement("shoal-player");
    el.setAttribute("src", new URL(entry.manifest, seed).href);
    if (params.get("signal")) el.setAttribute("signal", params.get("signal"));
    box.appendChild(el);
    el.addEventListener("shoal-error", function (e) {
      var p = document.createElement("p");
      p.className = "hint error";
      p.textContent = "Playback failed: " + e.detail;
      box.appendChild(p);
    });
    window.shoalPlayer = el;
  }

  var last = null;
  setInterval(function () {
    var el = window.shoalPlayer;
    var s = el && el.stats();
    if (!s) return;
    var total = s.bytesFromPeers + s.bytesFromSeed + s.bytesFromHttp;
    var now = performance.now();
    var rate = last ? ((total - last.total) * 8 / ((now - last.t) / 1000) / 1e6).toFixed(2) + " Mbit/s" : "–";
    last = { total: total, t: now };
    document.getElementById("s-p2p").textContent = total ? (100 * s.bytesFromPeers / total).toFixed(1) + " %" : "–";
    document.getElementById("s-peers").textContent =
      s.peers + (s.peerConnections > s.peers ? " (+" + (s.peerConnections - s.peers) + " connecting)" : "");
    document.getElementById("s-rate").textContent = rate;
    document.getElementById("s-peer-bytes").textContent = mb(s.bytesFromPeers);
    document.getElementById("s-seed-bytes").textContent = mb(s.bytesFromSeed + s.bytesFromHttp);
    document.getElementById("s-up").textContent = mb(s.bytesUploaded);
    document.getElementById("s-startup").textContent = s.startupMs == null ? "–" : Math.round(s.startupMs) + " ms";
    document.getElementById("s-stalls").textContent = s.stalls + " (" + Math.round(s.stalledMs) + " ms)";
    document.getElementById("s-verified").textContent = s.segmentsVerified + (s.segments ? " / " + s.segments : "");
    var live = typeof s.latencyMs === "number";
    document.getElementById("s-latency-row").style.display = live ? "" : "none";
    if (live) document.getElementById("s-latency").textContent = (s.latencyMs / 1000).toFixed(1) + " s";
  }, 1000);

  function getJson(path) {
    return fetch(new URL(path, seed)).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  // Live channels (?live=NAME plays one); an older seed has none.
  var wantLive = params.get("live");
  var liveList = getJson("/live/index.json").catch(function () { return []; }).then(function (list) {
    var ul = document.getElementById("live");
    list.forEach(function (c) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = "?seed=" + encodeURIComponent(seed) + "&live=" + encodeURIComponent(c.channel);
      a.textContent = c.channel;
      li.appendChild(a);
      if (c.status !== "running") li.appendChild(document.createTextNode(" (" + c.status + ")"));
      ul.appendChild(li);
    });
    document.getElementById("live-section").hidden = !list.length;
    return list;
  });
  if (wantLive) {
    liveList.then(function (list) {
      var c = list.find(function (x) { return x.channel === wantLive; });
      if (c) play(c);
      else hint.textContent = "The seed has no live channel " + wantLive + ".";
    });
  }

  getJson("/vod/index.json").then(function (list) {
    var ul = document.getElementById("videos");
    list.forEach(function (v) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = "?seed=" + encodeURIComponent(seed) + "&v=" + encodeURIComponent(v.content_id);
      a.textContent = v.title + " (" + Math.round(v.duration_ms / 1000) + " s)";
      li.appendChild(a);
      ul.appendChild(li);
    });
    if (wantLive) return;
    if (!list.length) {
      hint.textContent = "The seed has no videos yet.";
      liveList.then(function (live) { if (live.length) play(live[0]); });
      return;
    }
    var want = params.get("v");
    play(list.find(function (v) { return v.content_id === want; }) || list[0]);
  }).catch(function (e) {
    hint.className = "hint error";
    hint.textContent = "Cannot reach the seed at " + seed + ": " + e.message + ". Start it with `npm start`.";
  });
})();
