/* vflchain explorer: charts, live updates and the drop zone. Served by the app itself (no CDN);
   every value from the server is inserted with textContent, never as HTML. */
"use strict";
(function () {
  var POLL_MS = 1000;

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function shortHex(h) {
    h = String(h || "");
    return h.length > 19 ? h.slice(0, 10) + "\u2026" + h.slice(-8) : h;
  }

  function code(h) {
    var c = el("code", shortHex(h));
    c.title = String(h || "");
    return c;
  }

  function badge(state) {
    var cls = { attested: "ok", closed: "ok", disputed: "bad", aborted: "bad", expired: "bad", invalid: "bad" }[state] || "wait";
    return el("span", state, "badge " + cls);
  }

  function when(ts) {
    if (ts === null || ts === undefined) return "";
    return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19);
  }

  function sessionLink(sid) {
    var a = el("a");
    a.href = "/session/" + encodeURIComponent(sid);
    a.appendChild(code(sid));
    return a;
  }

  function row(cells) {
    var tr = el("tr");
    cells.forEach(function (c) {
      var td = el("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "" : String(c);
      tr.appendChild(td);
    });
    return tr;
  }

  /* ---------------------------------------------------------------- charts */

  function chart(id, config) {
    var canvas = document.getElementById("chart-" + id);
    if (!canvas || !window.Chart) return null;
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false,
      interaction: { mode: "nearest", intersect: false } }, config.options || {});
    return new window.Chart(canvas, config);
  }

  function axes(x, y, extra) {
    return Object.assign({ scales: { x: { type: "linear", title: { display: true, text: x } },
      y: { title: { display: true, text: y } } } }, extra || {});
  }

  function charts() {
    var block = document.getElementById("chart-data");
    if (!block) return;
    if (!window.Chart) {
      document.querySelectorAll("figure.chart").forEach(function (f) {
        f.appendChild(el("p", "The charting library is missing (run `make setup`).", "error"));
      });
      return;
    }
    var d = JSON.parse(block.textContent);
    if (d.loss && d.loss.length) {
      chart("loss", { type: "line", data: { datasets: [{ label: "loss", borderColor: "#1f6feb", pointRadius: 2,
        data: d.loss.map(function (p) { return { x: p.round, y: p.loss }; }) }] }, options: axes("round", "loss") });
    }
    (d.roc || []).forEach(function (r, i) {
      var pts = function (a) { return a.map(function (p) { return { x: p[0], y: p[1] }; }); };
      chart("roc-" + i, { type: "scatter", data: { datasets: [
        { label: "ROC " + r.split + " (AUC " + r.auc + ")", data: pts(r.roc), showLine: true, borderColor: "#1f6feb", pointRadius: 0 },
        { label: "chance", data: [{ x: 0, y: 0 }, { x: 1, y: 1 }], showLine: true, borderColor: "#aaa", borderDash: [4, 4], pointRadius: 0 }
      ] }, options: axes("false positive rate", "true positive rate") });
      chart("ks-" + i, { type: "scatter", data: { datasets: [
        { label: "TPR", data: pts(r.ks_tpr), showLine: true, borderColor: "#1a7f37", pointRadius: 0 },
        { label: "FPR", data: pts(r.ks_fpr), showLine: true, borderColor: "#cf222e", pointRadius: 0 }
      ] }, options: axes("score threshold", "rate") });
    });
    var bins = (d.binning || {}).features || [];
    if (bins.length) {
      var top = bins.slice(0, 20);
      chart("iv", { type: "bar", data: { labels: top.map(function (f) { return f.feature; }),
        datasets: [{ label: "IV (top " + top.length + " of " + bins.length + ")", data: top.map(function (f) { return f.iv; }),
          backgroundColor: "#1f6feb" }] },
        options: { indexAxis: "y", interaction: { mode: "nearest", axis: "y", intersect: false },
          scales: { y: { ticks: { autoSkip: false, font: { size: 10 } } } } } });
      var woe = chart("woe", { type: "bar", data: { labels: [], datasets: [{ label: "WoE", data: [], backgroundColor: "#8250df" }] } });
      var pick = document.getElementById("woe-feature");
      var show = function () {
        var f = bins[Number(pick.value) || 0];
        woe.data.labels = f.bins.map(function (b) {  // interval ends to 3 significant digits
          return String(b.interval || b.bin).replace(/-?\d+\.\d+(e-?\d+)?/g, function (x) { return String(Number(Number(x).toPrecision(3))); });
        });
        woe.data.datasets[0].data = f.bins.map(function (b) { return b.woe; });
        woe.data.datasets[0].label = "WoE of " + f.feature;
        woe.update();
      };
      if (woe && pick) { pick.addEventListener("change", show); show(); }
    }
    if (d.gmm) {
      var g = d.gmm;
      chart("gmm", { type: "bubble", data: { datasets: g.components.map(function (c) {
        return { label: "component " + c.k + " (weight " + c.weight.toFixed(3) + ")",
          data: [{ x: c.x, y: c.y, r: 4 + 30 * c.weight }] };
      }) }, options: axes(g.features[0] || "feature 1", g.features[1] || "feature 2") });
      chart("gmm-sizes", { type: "bar", data: { labels: g.sizes.map(function (s) { return "cluster " + s.cluster; }),
        datasets: [{ label: "rows", data: g.sizes.map(function (s) { return s.count; }), backgroundColor: "#1a7f37" }] } });
    }
    var comm = d.communication || {};
    var names = Object.keys(comm).filter(function (k) { return comm[k].length; });
    if (names.length) {
      var first = comm[names[0]];
      chart("comm", { type: "bar", data: { labels: first.map(function (r) { return r.round + (r.phase ? " " + r.phase : ""); }),
        datasets: [
          { label: names[0] + " sent", data: first.map(function (r) { return r.sent; }), backgroundColor: "#1f6feb" },
          { label: names[0] + " received", data: first.map(function (r) { return r.received; }), backgroundColor: "#d4a72c" }
        ] }, options: { scales: { y: { type: "logarithmic", title: { display: true, text: "bytes" } } } } });
    }
  }

  /* ---------------------------------------------------------------- live */

  function live() {
    var box = document.getElementById("live");
    if (!box) return;
    var after = Number(box.dataset.after);
    var feed = document.querySelector("#feed tbody");
    var sessions = document.querySelector("#live-sessions tbody");
    var state = document.getElementById("live-state");
    function tick() {
      fetch("/api/live?after=" + after, { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (d) {
        d.items.forEach(function (x) {
          var tr = row([x.block, when(x.time), sessionLink(x.session_id), x.event, x.round, x.party, x.what]);
          tr.dataset.session = x.session_id;
          tr.dataset.event = x.event;
          tr.classList.add("new");
          feed.insertBefore(tr, feed.firstChild);
        });
        while (feed.rows.length > 200) feed.deleteRow(feed.rows.length - 1);
        sessions.replaceChildren.apply(sessions, d.active.map(function (s) {
          var tr = row([sessionLink(s.session_id), s.algorithm, badge(s.status), s.rounds, s.attested, s.disputed, s.pending]);
          tr.dataset.session = s.session_id;
          return tr;
        }));
        if (d.head > after) after = d.head;
        var head = document.getElementById("head");
        if (head) head.textContent = String(after);
        var mode = document.getElementById("mode");
        if (mode && d.mode) mode.textContent = d.mode;
        state.textContent = d.error ? "chain: " + d.error : "up to block " + after;
      }).catch(function () { state.textContent = "explorer not answering; retrying"; })
        .finally(function () { setTimeout(tick, POLL_MS); });
    }
    setTimeout(tick, POLL_MS);
  }

  /* a running session's page: its rounds table follows the chain */
  function sessionLive() {
    var box = document.getElementById("session");
    if (!box || box.dataset.live !== "1") return;
    var sid = box.dataset.session;
    var body = document.querySelector("#rounds tbody");
    var parties = Array.prototype.map.call(document.querySelectorAll("#participants tbody tr td:nth-child(2) code"),
      function (c) { return c.title; });
    function tick() {
      fetch("/api/session/" + encodeURIComponent(sid), { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (d) {
        if (!d.rounds) return;
        body.replaceChildren.apply(body, d.rounds.map(function (r) {
          var phase = body.querySelector('tr[data-round="' + r.round + '"] td:nth-child(2)');
          var cells = [r.round, phase ? phase.textContent : "", when(r.time)];
          parties.forEach(function (p) {
            var s = r.submissions[p];
            if (!s) { cells.push("not posted"); return; }
            var span = el("span");
            span.append("commitment ", code(s.commitment), el("br"), "tx ", code(s.tx));
            cells.push(span);
          });
          cells.push(badge(r.state));
          var tr = row(cells);
          tr.dataset.round = r.round;
          tr.dataset.state = r.state;
          return tr;
        }));
        var n = d.summary.rounds_by_state;
        ["attested", "disputed", "pending"].forEach(function (k) {
          var c = document.getElementById("n-" + k);
          if (c) c.textContent = String(n[k]);
        });
        if (d.summary.status === "opened" || d.summary.status === "active") setTimeout(tick, POLL_MS);
      }).catch(function () { setTimeout(tick, POLL_MS); });
    }
    setTimeout(tick, POLL_MS);
  }

  /* ---------------------------------------------------------------- drop zone */

  function dropZone() {
    var zone = document.getElementById("drop");
    var input = document.getElementById("zip");
    if (!zone || !input) return;
    ["dragenter", "dragover"].forEach(function (t) {
      zone.addEventListener(t, function (ev) { ev.preventDefault(); zone.classList.add("over"); });
    });
    zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
    zone.addEventListener("drop", function (ev) {
      ev.preventDefault();
      zone.classList.remove("over");
      if (ev.dataTransfer && ev.dataTransfer.files.length) {
        input.files = ev.dataTransfer.files;
        document.getElementById("verify-form").submit();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    charts();
    live();
    sessionLive();
    dropZone();
  });
})();
