// Shoal admin console: polls the signal server's admin API (behind the
// admin key the operator types in) every 2 s, charts P2P share, origin
// egress and viewers per group over the last 10 minutes (uPlot), lists
// channels, viewers, seeds and events, and kicks viewers or changes the
// matching settings through the same API.
(function () {
  "use strict";
  var POLL_MS = 2000, KEEP = 300; // 10 minutes of points
  var $ = function (id) { return document.getElementById(id); };
  var key = sessionStorage.getItem("shoal-admin-key");
  var series = { t: [], share: [], egress: [], groups: {} };
  var charts = {};
  var lastHttp = null, timer = null;

  function api(path, opts) {
    opts = opts || {};
    opts.headers = Object.assign({ authorization: "Bearer " + key }, opts.headers || {});
    return fetch(path, opts).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
        return body;
      });
    });
  }

  function cell(tr, text) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    tr.appendChild(td);
    return td;
  }
  function fill(id, rows, render) {
    var tbody = $(id).querySelector("tbody");
    tbody.textContent = "";
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      render(tr, r);
      tbody.appendChild(tr);
    });
  }
  function mb(b) { return (b / 1e6).toFixed(1) + " MB"; }
  function pct(x) { return (100 * x).toFixed(1) + " %"; }

  function chart(id, labels) {
    if (!window.uPlot) {
      $(id).textContent = "(charts need vendor/uPlot.iife.min.js)";
      return null;
    }
    var s = [{}].concat(labels.map(function (l, i) {
      return { label: l, stroke: ["#7bdff2", "#f7d6e0", "#b2f7ef", "#eff7f6", "#f2b5d4", "#9b5de5"][i % 6] };
    }));
    var short = function (u, vals) {
      return vals.map(function (v) { return v >= 1e6 ? (v / 1e6).toFixed(1) + "M" : v >= 1e3 ? (v / 1e3).toFixed(0) + "k" : +v.toFixed(2); });
    };
    return new uPlot({ width: 360, height: 160, series: s, axes: [{ stroke: "#9fb3c8" }, { stroke: "#9fb3c8", size: 56, values: short }] },
      [[]].concat(labels.map(function () { return []; })), $(id));
  }

  function record(channels, viewers) {
    var now = Date.now() / 1000;
    var t = channels.totals;
    var http = t.bytes_from_http;
    var egress = lastHttp == null ? 0 : Math.max(0, (http - lastHttp.bytes) / (now - lastHttp.at));
    lastHttp = { bytes: http, at: now };
    series.t.push(now);
    series.share.push(t.p2p_share);
    series.egress.push(egress);
    var counts = {};
    viewers.forEach(function (v) { counts[v.group] = (counts[v.group] || 0) + 1; });
    Object.keys(counts).forEach(function (g) {
      if (!series.groups[g]) series.groups[g] = series.t.slice(0, -1).map(function () { return 0; });
    });
    Object.keys(series.groups).forEach(function (g) { series.groups[g].push(counts[g] || 0); });
    if (series.t.length > KEEP) {
      series.t.shift(); series.share.shift(); series.egress.shift();
      Object.keys(series.groups).forEach(function (g) { series.groups[g].shift(); });
    }
    charts.share = charts.share || chart("chart-share", ["P2P share"]);
    charts.egress = charts.egress || chart("chart-egress", ["origin bytes/s"]);
    var groups = Object.keys(series.groups).sort();
    if (charts.groups && charts.groupKeys !== groups.join()) { charts.groups.destroy(); charts.groups = null; }
    if (!charts.groups && groups.length) {
      charts.groups = chart("chart-groups", groups);
      charts.groupKeys = groups.join();
    }
    if (charts.share) charts.share.setData([series.t, series.share]);
    if (charts.egress) charts.egress.setData([series.t, series.egress]);
    if (charts.groups) charts.groups.setData([series.t].concat(groups.map(function (g) { return series.groups[g]; })));
  }

  function kick(peer, row) {
    var ban = Number($("ban-s").value) || 0;
    row.querySelector("button").disabled = true;
    api("/api/viewers/" + encodeURIComponent(peer) + "/kick", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ban_s: ban, message: "removed by the operator" }),
    }).then(function (r) {
      var c = r.connections[0];
      $("status").textContent = "kicked " + peer + (c && c.acked ? " (acknowledged in " + c.ms + " ms)" : " (removed without acknowledgement)");
      refresh();
    }, function (e) { $("status").textContent = "kick failed: " + e.message; });
  }

  function stopChannel(name, seed, button) {
    button.disabled = true;
    api("/api/admin/channels/" + encodeURIComponent(name) + "?seed=" + encodeURIComponent(seed), { method: "DELETE" })
      .then(function (r) { $("status").textContent = r.message; refresh(); },
        function (e) { button.disabled = false; $("status").textContent = "stop failed: " + e.message; });
  }

  function refresh() {
    return Promise.all([api("/api/admin/channels"), api("/api/admin/viewers"), api("/api/admin/seeds"), api("/api/admin/events")])
      .then(function (r) {
        var channels = r[0], viewers = r[1].viewers, seeds = r[2].seeds, events = r[3].events;
        record(channels, viewers);
        fill("channels", channels.swarms, function (tr, s) {
          var t = s.totals;
          [s.swarm, (s.status || "").replace("_", " "), t.viewers, t.seeds, pct(t.p2p_share), mb(t.bytes_from_peers), mb(t.bytes_from_http), t.stalls].forEach(function (v) { cell(tr, v); });
          var td = cell(tr, "");
          s.peers.filter(function (p) { return p.seed_id; }).forEach(function (p) {
            // A live channel is stopped; a VOD unpublished (the seed refuses
            // those of its media folder at start).
            var b = document.createElement("button");
            b.className = p.live ? "stop" : "unpublish";
            b.textContent = (p.live ? "Stop on " : "Unpublish on ") + p.seed_id;
            b.onclick = function () { stopChannel(s.swarm, p.seed_id, b); };
            td.appendChild(b);
          });
        });
        var sel = $("nc-seed"), chosen = sel.value;
        sel.textContent = "";
        seeds.forEach(function (s) {
          var o = document.createElement("option");
          o.value = o.textContent = s.seed_id;
          sel.appendChild(o);
        });
        if (chosen) sel.value = chosen;
        fill("viewers", viewers, function (tr, v) {
          tr.dataset.peer = v.peer_id;
          [v.peer_id, v.viewer || "(anonymous)", v.user_group, v.group, v.addr, v.swarms.join(" "),
            mb(v.report.bytes_from_peers), mb(v.report.bytes_from_http), v.report.stalls,
            v.report.latency_ms == null ? "" : (v.report.latency_ms / 1000).toFixed(1) + " s"].forEach(function (x) { cell(tr, x); });
          var b = document.createElement("button");
          b.className = "kick";
          b.textContent = "Kick";
          b.onclick = function () { kick(v.peer_id, tr); };
          cell(tr, "").appendChild(b);
        });
        fill("seeds", seeds, function (tr, s) {
          var r = s.report;
          var health = !r ? "no report yet" : r.channels_ok + " ok, " + r.channels_interrupted + " interrupted" +
            (r.interrupted && r.interrupted.length ? " (" + r.interrupted.join(", ") + ")" : "") +
            "; cache " + mb(r.cache_bytes) + " of " + mb(r.cache_max_bytes);
          // Caps as the seed reports them (read-only: set on the seed).
          var caps = r && r.caps ? r.caps.capacity + " viewers, " + r.caps.max_conns_per_peer + " per viewer" : s.capacity;
          [s.seed_id, s.http_base, s.addr, s.group, s.contents, caps,
            (r ? r.uptime_s : s.uptime_s) + " s",
            r ? r.viewers : "",
            r ? mb(r.rtc_bytes_out) + " / " + mb(r.http_bytes_out) : "",
            r ? mb(r.rtc_bytes_in) + " / " + mb(r.http_bytes_in) : "",
            health,
            s.stale ? "STALE" : "reporting"].forEach(function (x) { cell(tr, x); });
          if (s.stale) tr.className = "stale";
        });
        var ol = $("events");
        ol.textContent = "";
        events.slice(-30).reverse().forEach(function (e) {
          var li = document.createElement("li");
          li.textContent = new Date(e.at * 1000).toLocaleTimeString() + "  " + e.kind + (e.peer ? " " + e.peer : "") + ": " + e.detail;
          ol.appendChild(li);
        });
        $("status").dataset.ok = "1";
      }, function (e) { $("status").textContent = "cannot reach the admin API: " + e.message; });
  }

  function loadSettings() {
    return api("/api/admin/settings").then(function (s) {
      $("match-enough").value = s.match_enough;
      $("match-max").value = s.match_max;
    });
  }

  function start() {
    $("login").hidden = true;
    $("app").hidden = false;
    loadSettings();
    refresh();
    timer = setInterval(refresh, POLL_MS);
  }

  $("login").onsubmit = function (ev) {
    ev.preventDefault();
    key = $("key").value.trim();
    api("/api/admin/settings").then(function () {
      sessionStorage.setItem("shoal-admin-key", key);
      start();
    }, function (e) { $("login-error").textContent = e.message; });
  };

  $("settings").onsubmit = function (ev) {
    ev.preventDefault();
    api("/api/admin/settings", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ match_enough: Number($("match-enough").value), match_max: Number($("match-max").value) }),
    }).then(function () { $("settings-result").textContent = "saved"; },
      function (e) { $("settings-result").textContent = e.message; });
  };

  $("nc-kind").onchange = function () {
    var vod = $("nc-kind").value === "vod";
    document.querySelectorAll(".nc-live").forEach(function (e) { e.hidden = vod; });
    document.querySelectorAll(".nc-vod").forEach(function (e) { e.hidden = !vod; });
  };

  $("new-channel").onsubmit = function (ev) {
    ev.preventDefault();
    var kind = $("nc-kind").value;
    var body = { seed: $("nc-seed").value, kind: kind };
    if (kind === "vod") body.file = $("nc-file").value;
    else { body.name = $("nc-name").value; body.source = $("nc-source").value; }
    var button = $("new-channel").querySelector("button");
    button.disabled = true;
    $("nc-result").textContent = kind === "live" ? "starting..." : "sending...";
    api("/api/admin/channels", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (r) { $("nc-result").textContent = r.message; button.disabled = false; refresh(); },
      function (e) { $("nc-result").textContent = e.message; button.disabled = false; });
  };

  if (key) api("/api/admin/settings").then(start, function () { sessionStorage.removeItem("shoal-admin-key"); key = null; });
})();
