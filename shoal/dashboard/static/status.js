/* shoal /status: polls /api/snapshot and /api/task-stream (increments only) and renders. */
(function () {
  "use strict";
  var TS = window.ShoalTaskStream;
  var POLL_MS = 1000;         // refresh period (the issue asks for <= 1 s; each poll costs the browser CPU)
  var RETRY_MS = 2000;        // after a failed poll
  var MAX_PREFIX_ROWS = 60;   // progress rows shown; the rest are summarised
  var MAX_WORKER_ROWS = 200;
  var MAX_RECORDS = 20000;    // browser-side task stream buffer cap

  var $ = function (id) { return document.getElementById(id); };
  var canvas = $("task-stream");
  var MAX_LEGEND = 30;         // legend entries: the prefixes currently on screen
  var stream = new TS.TaskStream(canvas, { maxRecords: MAX_RECORDS });
  var legendShown = null;
  stream.attachTooltip($("stream-tooltip"));

  var cursor = 0;
  var clockOffset = 0;        // scheduler time minus browser time, seconds
  var polls = 0;
  var prefixOrder = new Map(); // first-seen order keeps progress rows from jumping around
  var windowSeconds = Number($("window").value);
  $("window").addEventListener("change", function () { windowSeconds = Number(this.value); draw(); });

  function fmtBytes(n) {
    if (n < 1024) return Math.round(n) + " B";
    var units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    for (var i = 0; i < units.length; i++) {
      n /= 1024;
      if (n < 1024 || i === units.length - 1) return n.toFixed(n < 10 ? 2 : 1) + " " + units[i];
    }
  }
  function fmtInt(n) { return Number(n).toLocaleString("en-US"); }
  function fmtDuration(s) {
    if (s < 60) return Math.floor(s) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function serverNow() { return Date.now() / 1000 + clockOffset; }

  function setConnection(ok, text) {
    var c = $("conn");
    c.className = "conn " + (ok ? "live" : "down");
    $("conn-text").textContent = text;
  }

  // ------------------------------------------------------------------ summary tiles
  function renderSummary(snap) {
    var t = snap.totals;
    var running = 0;
    Object.keys(snap.prefixes).forEach(function (p) { running += snap.prefixes[p].processing; });
    $("t-workers").textContent = fmtInt(t.workers);
    $("t-threads").textContent = fmtInt(t.nthreads);
    $("t-tasks").textContent = fmtInt(t.tasks);
    $("t-rate").textContent = snap.tasks_per_second >= 100 ? fmtInt(Math.round(snap.tasks_per_second))
      : snap.tasks_per_second.toFixed(1);
    $("t-memory").textContent = fmtBytes(t.memory_process);
    $("t-memory-sub").textContent = (t.memory_limit ? "of " + fmtBytes(t.memory_limit) + " limit" : "no limit") +
      " · " + fmtBytes(t.memory_managed) + " managed";
    $("t-threads-sub").textContent = "busy: " + fmtInt(running);
    var nprefixes = Object.keys(snap.prefixes).length;
    $("t-tasks-sub").textContent = nprefixes + (nprefixes === 1 ? " prefix" : " prefixes");
    $("t-uptime").textContent = fmtDuration(snap.scheduler.now - snap.scheduler.started);
    $("t-address").textContent = snap.scheduler.address;
    $("t-address").title = snap.scheduler.address;
    document.title = "Status (" + fmtInt(running) + " processing) · shoal";
  }

  // ------------------------------------------------------------------ progress per prefix
  function renderProgress(snap) {
    var names = Object.keys(snap.prefixes);
    names.forEach(function (p) { if (!prefixOrder.has(p)) prefixOrder.set(p, prefixOrder.size); });
    names.sort(function (a, b) { return prefixOrder.get(a) - prefixOrder.get(b); });
    var box = $("progress");
    if (!names.length) {
      if (!box.querySelector(".empty-note")) { box.textContent = ""; box.appendChild(el("div", "empty-note", "No tasks yet.")); }
      return;
    }
    var shown = names.slice(0, MAX_PREFIX_ROWS);
    var frag = document.createDocumentFragment();
    shown.forEach(function (p) {
      var c = snap.prefixes[p];
      var total = c.released + c.waiting + c.queued + c.processing + c.memory + c.erred;
      var color = TS.prefixColor(p);
      var row = el("div", "prow");
      row.dataset.prefix = p;
      row.dataset.memory = c.memory;
      row.dataset.processing = c.processing;
      row.dataset.waiting = c.waiting + c.queued;
      row.dataset.erred = c.erred;
      row.dataset.total = total;
      var name = el("div", "name", p);
      name.title = p;
      row.appendChild(name);
      var bar = el("div", "bar");
      [["memory", c.memory], ["released", c.released], ["erred", c.erred], ["processing", c.processing]]
        .forEach(function (seg) {
          if (!seg[1] || !total) return;
          var s = el("span", seg[0]);
          s.style.width = (100 * seg[1] / total) + "%";
          if (seg[0] !== "erred") s.style.backgroundColor = color;
          bar.appendChild(s);
        });
      bar.title = p + ": " + c.memory + " in memory, " + c.released + " released, " + c.processing +
        " processing, " + c.queued + " queued, " + c.waiting + " waiting (" + (c.no_worker || 0) +
        " with no worker able to run them), " + c.erred + " erred";
      row.appendChild(bar);
      var count = el("div", "count");
      var done = c.memory + c.released + c.erred;
      count.appendChild(el("b", null, fmtInt(done)));
      count.appendChild(document.createTextNode(" / " + fmtInt(total)));
      var extra = [];
      if (c.processing) extra.push(fmtInt(c.processing) + " running");
      if (c.waiting + c.queued) extra.push(fmtInt(c.waiting + c.queued) + " waiting");
      if (c.no_worker) extra.push(fmtInt(c.no_worker) + " no-worker");
      if (c.erred) extra.push(fmtInt(c.erred) + " erred");
      if (extra.length) count.appendChild(document.createTextNode(" · " + extra.join(" · ")));
      row.appendChild(count);
      frag.appendChild(row);
    });
    if (names.length > shown.length) {
      frag.appendChild(el("div", "more", "and " + (names.length - shown.length) + " more prefixes (see /metrics)"));
    }
    box.textContent = "";
    box.appendChild(frag);
  }

  // ------------------------------------------------------------------ workers
  function memoryBar(managed, process, limit, scale, spilled, paused) {
    var bar = el("div", "mbar");
    var unmanaged = Math.max(0, process - managed);
    var m = el("span", "managed");
    m.style.width = (100 * Math.min(managed, scale) / scale) + "%";
    var u = el("span", "unmanaged");
    u.style.left = m.style.width;
    u.style.width = (100 * Math.min(unmanaged, Math.max(0, scale - managed)) / scale) + "%";
    bar.appendChild(m);
    bar.appendChild(u);
    if (limit) {
      var l = el("span", "limit");
      l.style.left = "calc(" + (100 * Math.min(limit, scale) / scale) + "% - 1px)";
      bar.appendChild(l);
    }
    bar.title = "managed " + fmtBytes(managed) + ", unmanaged " + fmtBytes(unmanaged) +
      ", spilled to disk " + fmtBytes(spilled || 0) +
      (limit ? ", limit " + fmtBytes(limit) : ", no limit") + (paused ? "; paused" : "");
    if (paused) bar.classList.add("paused");
    return bar;
  }

  function renderWorkers(snap) {
    var t = snap.totals;
    var cm = $("cluster-memory");
    cm.textContent = "";
    cm.appendChild(el("span", "lbl", "Cluster"));
    cm.appendChild(memoryBar(t.memory_managed, t.memory_process, t.memory_limit,
      Math.max(1, t.memory_limit, t.memory_process), t.memory_spilled, false));
    cm.appendChild(el("span", "muted", fmtBytes(t.memory_process) + " / " + (t.memory_limit ? fmtBytes(t.memory_limit) : "no limit") +
      (t.memory_spilled ? " · " + fmtBytes(t.memory_spilled) + " spilled" : "") +
      (t.paused ? " · " + t.paused + " paused" : "")));

    var workers = snap.workers.slice().sort(function (a, b) { return a.address < b.address ? -1 : 1; });
    var memScale = 1, procScale = 1;
    workers.forEach(function (w) {
      memScale = Math.max(memScale, w.memory_limit, w.memory_process);
      procScale = Math.max(procScale, w.processing, w.nthreads);
    });
    var body = $("status-workers").tBodies[0];
    var frag = document.createDocumentFragment();
    workers.slice(0, MAX_WORKER_ROWS).forEach(function (w) {
      var tr = el("tr");
      tr.dataset.worker = w.address;
      tr.dataset.processing = w.processing;
      var name = el("td", "mono", TS.workerLabel(w));
      name.title = w.address;
      tr.appendChild(name);
      var mcell = el("td", "barcell");
      mcell.appendChild(memoryBar(w.memory_managed, w.memory_process, w.memory_limit, memScale,
        w.memory_spilled, w.status === "paused"));
      tr.appendChild(mcell);
      tr.appendChild(el("td", "num", fmtBytes(w.memory_process) + " / " + (w.memory_limit ? fmtBytes(w.memory_limit) : "∞") +
        (w.memory_spilled ? " + " + fmtBytes(w.memory_spilled) + " disk" : "") +
        (w.status === "paused" ? " · paused" : "")));
      tr.appendChild(el("td", "num", Math.round(w.cpu) + "%"));
      var pcell = el("td", "barcell");
      var pbar = el("div", "pbar");
      var fill = el("span");
      fill.style.width = (100 * w.processing / procScale) + "%";
      pbar.appendChild(fill);
      pbar.title = w.processing + " processing on " + w.nthreads + " threads";
      pcell.appendChild(pbar);
      tr.appendChild(pcell);
      tr.appendChild(el("td", "num", fmtInt(w.processing)));
      frag.appendChild(tr);
    });
    if (!workers.length) {
      var tr = el("tr", "empty");
      var td = el("td", null, "No workers connected");
      td.colSpan = 6;
      tr.appendChild(td);
      frag.appendChild(tr);
    } else if (workers.length > MAX_WORKER_ROWS) {
      var more = el("tr", "empty");
      var mtd = el("td", null, "and " + (workers.length - MAX_WORKER_ROWS) + " more workers — see /workers");
      mtd.colSpan = 6;
      more.appendChild(mtd);
      frag.appendChild(more);
    }
    body.textContent = "";
    body.appendChild(frag);
  }

  // ------------------------------------------------------------------ task stream
  function draw() {
    var now = serverNow();
    stream.draw(now - windowSeconds, now, now);
  }

  function updateLegend() {
    var prefixes = Array.from(stream.visiblePrefixes.keys());
    var id = prefixes.sort().join("\u0000");
    if (id === legendShown) return;
    legendShown = id;
    TS.renderLegend($("stream-legend"), prefixes, MAX_LEGEND);
  }

  function renderLoop() {
    draw();
    window.setTimeout(function () { window.requestAnimationFrame(renderLoop); }, 250);
  }

  // ------------------------------------------------------------------ polling
  function getJSON(url) {
    return fetch(url, { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error(url + " answered HTTP " + r.status);
      return r.json();
    });
  }

  function poll() {
    var started = Date.now();
    Promise.all([getJSON("/api/snapshot"), getJSON("/api/task-stream?since=" + cursor)])
      .then(function (res) {
        var snap = res[0], ts = res[1];
        clockOffset = snap.scheduler.now - (started + Date.now()) / 2000;
        if (ts.cursor < cursor) stream.clear();   // the scheduler restarted: start over
        cursor = ts.cursor;
        var t0 = performance.now();
        stream.setWorkers(snap.workers);
        stream.add(ts.records);
        stream.prune(serverNow() - 600);
        renderSummary(snap);
        renderProgress(snap);
        renderWorkers(snap);
        draw();
        updateLegend();
        polls++;
        // exposed for tests and for anyone checking the page stays cheap
        document.body.dataset.polls = String(polls);
        document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
        setConnection(true, "live · " + snap.scheduler.address);
        window.setTimeout(poll, POLL_MS);
      })
      .catch(function (err) {
        setConnection(false, "disconnected — retrying (" + err.message + ")");
        window.setTimeout(poll, RETRY_MS);
      });
  }

  TS.renderLegend($("stream-legend"), [], MAX_LEGEND);
  poll();
  renderLoop();
})();
