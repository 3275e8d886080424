/* shoal /tasks and /individual-task-stream: the task stream alone, tall, over every
   record gathered since the page opened (the first answer is the scheduler's newest page);
   polls /api/task-stream for increments and /api/snapshot for the workers' rows. */
(function () {
  "use strict";
  var TS = window.ShoalTaskStream, S = window.Shoal;
  var MAX_RECORDS = 100000;   // dask's /tasks keeps 100k rectangles too
  var $ = function (id) { return document.getElementById(id); };
  var canvas = $("task-stream");
  // as tall as the window allows below the canvas's top (the page's header, or nothing on
  // the chrome-less /individual-task-stream), leaving room for the axis and the legend
  var tall = Math.max(window.innerHeight < 500 ? 120 : 380,
    window.innerHeight - canvas.getBoundingClientRect().top - 80);
  // alone on its page, the rows share the whole height however few they are
  var alone = document.body.classList.contains("individual");
  var stream = new TS.TaskStream(canvas, { maxRecords: MAX_RECORDS, maxPlot: tall,
                                           maxRow: alone ? tall : 48 });
  stream.attachTooltip($("stream-tooltip"));
  var cursor = 0, clockOffset = 0, pausedAt = null, legendShown = null;
  var notLoaded = 0;          // records an answer left out (each is one page of the newest)

  function serverNow() { return Date.now() / 1000 + clockOffset; }
  // [t0, t1] to draw: the chosen window ending now, or every record kept, fitted
  function range(now) {
    var v = $("window").value;
    if (v !== "all") return [now - Number(v), now];
    var recs = stream.records;
    if (!recs.length) return [now - 10, now];
    var first = Infinity, last = -Infinity;
    for (var i = 0; i < recs.length; i++) {
      if (recs[i].start < first) first = recs[i].start;
      if (recs[i].stop > last) last = recs[i].stop;
    }
    var pad = Math.max(1e-3, (last - first) * 0.02);
    return [first - pad, Math.min(now, last + pad)];
  }
  function draw() {
    var now = pausedAt !== null ? pausedAt : serverNow();
    var r = range(now);
    stream.draw(r[0], r[1], now);
    var prefixes = Array.from(stream.visiblePrefixes.keys());
    var id = prefixes.sort().join("\u0000");
    if (id !== legendShown) { legendShown = id; TS.renderLegend($("stream-legend"), prefixes, 40); }
    $("stream-summary").textContent = stream.records.length.toLocaleString("en-US") +
      " records kept, " + stream.lastDrawn.toLocaleString("en-US") + " in the window" +
      (notLoaded ? " · " + notLoaded.toLocaleString("en-US") + " not loaded (more than a page at once)" : "") +
      (pausedAt !== null ? " · paused" : "");
  }
  $("window").addEventListener("change", draw);
  $("pause").addEventListener("change", function () {
    pausedAt = this.checked ? serverNow() : null;
    draw();
  });

  S.poll(function () { return ["api/snapshot", "api/task-stream?since=" + cursor]; },
    function (res, started) {
      var snap = res[0], ts = res[1];
      clockOffset = snap.scheduler.now - (started + Date.now()) / 2000;
      if (ts.cursor < cursor) { stream.clear(); notLoaded = 0; }   // the scheduler restarted
      notLoaded += ts.dropped || 0;
      cursor = ts.cursor;
      stream.setWorkers(snap.workers);
      stream.add(ts.records);
      draw();
    });
  function renderLoop() {
    if (pausedAt === null) draw();
    window.setTimeout(function () { window.requestAnimationFrame(renderLoop); }, 500);
  }
  TS.renderLegend($("stream-legend"), [], 40);
  renderLoop();
})();
