/* shoal /status: polls /api/snapshot and /api/task-stream (increments only) and renders.
   Draws only the sections present on the page, so the chrome-less individual pages
   (/individual-progress, /individual-cluster-memory, /individual-workers-memory,
   /individual-cpu, /individual-nprocessing) are this same script over one section. */
(function () {
  "use strict";
  var TS = window.ShoalTaskStream, S = window.Shoal;
  var MAX_PREFIX_ROWS = 60;   // progress rows shown; the rest are summarised
  var MAX_WORKER_ROWS = 200;
  var MAX_RECORDS = 20000;    // browser-side task stream buffer cap

  var $ = function (id) { return document.getElementById(id); };
  var canvas = $("task-stream");
  var MAX_LEGEND = 30;         // legend entries: the prefixes currently on screen
  var stream = canvas ? new TS.TaskStream(canvas, { maxRecords: MAX_RECORDS }) : null;
  var legendShown = null;
  if (stream) stream.attachTooltip($("stream-tooltip"));

  var cursor = 0;
  var clockOffset = 0;        // scheduler time minus browser time, seconds
  var prefixOrder = new Map(); // first-seen order keeps progress rows from jumping around
  var windowSeconds = $("window") ? Number($("window").value) : 30;
  if ($("window")) {
    $("window").addEventListener("change", function () { windowSeconds = Number(this.value); draw(); });
  }

  var fmtBytes = S.fmtBytes, fmtInt = S.fmtInt, el = S.el;
  function fmtDuration(s) {
    if (s < 60) return Math.floor(s) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }
  function serverNow() { return Date.now() / 1000 + clockOffset; }

  function setConnection(ok, text) {
    var c = $("conn");
    if (!c) return;
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
    shown.forEach(function (p) { frag.appendChild(S.progressRow(p, snap.prefixes[p], TS.prefixColor(p))); });
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

  function renderClusterMemory(snap) {
    var t = snap.totals;
    var cm = $("cluster-memory");
    cm.textContent = "";
    cm.appendChild(el("span", "lbl", "Cluster"));
    cm.appendChild(memoryBar(t.memory_managed, t.memory_process, t.memory_limit,
      Math.max(1, t.memory_limit, t.memory_process), t.memory_spilled, false));
    cm.appendChild(el("span", "muted", fmtBytes(t.memory_process) + " / " + (t.memory_limit ? fmtBytes(t.memory_limit) : "no limit") +
      (t.memory_spilled ? " · " + fmtBytes(t.memory_spilled) + " spilled" : "") +
      (t.paused ? " · " + t.paused + " paused" : "")));
    cm.dataset.process = String(t.memory_process);
  }

  function fillBar(fraction, title) {
    var bar = el("div", "pbar");
    var fill = el("span");
    fill.style.width = (100 * Math.max(0, Math.min(1, fraction))) + "%";
    bar.appendChild(fill);
    bar.title = title;
    return bar;
  }

  // The cells a worker row can have; the table's data-columns lists those it shows
  // (/status: all but "cpubar"; the individual pages: two or three of them).
  var CELLS = {
    name: function (w) { var c = el("td", "mono", TS.workerLabel(w)); c.title = w.address; return c; },
    memory: function (w, sc) {
      var c = el("td", "barcell");
      c.appendChild(memoryBar(w.memory_managed, w.memory_process, w.memory_limit, sc.memory,
        w.memory_spilled, w.status === "paused"));
      return c;
    },
    used: function (w) {
      return el("td", "num", fmtBytes(w.memory_process) + " / " + (w.memory_limit ? fmtBytes(w.memory_limit) : "∞") +
        (w.memory_spilled ? " + " + fmtBytes(w.memory_spilled) + " disk" : "") +
        (w.status === "paused" ? " · paused" : ""));
    },
    cpu: function (w) { return el("td", "num", Math.round(w.cpu) + "%"); },
    cpubar: function (w, sc) {
      var c = el("td", "barcell");
      c.appendChild(fillBar(w.cpu / sc.cpu, Math.round(w.cpu) + "% CPU (100% is one core; " +
        w.nthreads + " threads)"));
      return c;
    },
    processing: function (w, sc) {
      var c = el("td", "barcell");
      c.appendChild(fillBar(w.processing / sc.processing, w.processing + " processing on " + w.nthreads + " threads"));
      return c;
    },
    tasks: function (w) { return el("td", "num", fmtInt(w.processing)); }
  };

  function renderWorkers(snap) {
    var table = $("status-workers");
    var columns = (table.dataset.columns || "name memory used cpu processing tasks").split(" ");
    var workers = snap.workers.slice().sort(function (a, b) { return a.address < b.address ? -1 : 1; });
    var scale = { memory: 1, processing: 1, cpu: 100 };
    workers.forEach(function (w) {
      scale.memory = Math.max(scale.memory, w.memory_limit, w.memory_process);
      scale.processing = Math.max(scale.processing, w.processing, w.nthreads);
      scale.cpu = Math.max(scale.cpu, w.cpu);
    });
    var body = table.tBodies[0];
    var frag = document.createDocumentFragment();
    workers.slice(0, MAX_WORKER_ROWS).forEach(function (w) {
      var tr = el("tr");
      tr.dataset.worker = w.address;
      tr.dataset.processing = w.processing;
      tr.dataset.cpu = w.cpu;
      tr.dataset.memory = w.memory_process;
      columns.forEach(function (c) { tr.appendChild(CELLS[c](w, scale)); });
      frag.appendChild(tr);
    });
    var note = null;
    if (!workers.length) note = "No workers connected";
    else if (workers.length > MAX_WORKER_ROWS) {
      note = "and " + (workers.length - MAX_WORKER_ROWS) + " more workers (at most " + MAX_WORKER_ROWS +
        " rows) — see /workers";
    }
    if (note) {
      var tr = el("tr", "empty");
      var td = el("td", null, note);
      td.colSpan = columns.length;
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    body.textContent = "";
    body.appendChild(frag);
  }

  // ------------------------------------------------------------------ task stream
  function draw() {
    if (!stream) return;
    var now = serverNow();
    stream.draw(now - windowSeconds, now, now);
  }

  function updateLegend() {
    if (!stream) return;
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
  function urls() {
    var list = ["api/snapshot"];
    if (stream) list.push("api/task-stream?since=" + cursor);
    return list;
  }

  S.poll(urls, function (res, started) {
    var snap = res[0], ts = res[1];
    clockOffset = snap.scheduler.now - (started + Date.now()) / 2000;
    var t0 = performance.now();
    if (stream) {
      if (ts.cursor < cursor) stream.clear();   // the scheduler restarted: start over
      cursor = ts.cursor;
      stream.setWorkers(snap.workers);
      stream.add(ts.records);
      stream.prune(serverNow() - 600);
    }
    if ($("t-workers")) renderSummary(snap);
    if ($("progress")) renderProgress(snap);
    if ($("cluster-memory")) renderClusterMemory(snap);
    if ($("status-workers")) renderWorkers(snap);
    draw();
    updateLegend();
    // exposed for tests and for anyone checking the page stays cheap
    document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
    setConnection(true, "live · " + snap.scheduler.address);
  }, {
    onError: function (err) { setConnection(false, "disconnected — retrying (" + err.message + ")"); }
  });

  if (stream) {
    TS.renderLegend($("stream-legend"), [], MAX_LEGEND);
    renderLoop();
  }
})();
