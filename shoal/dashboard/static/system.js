/* shoal /system: polls /api/system (samples after a cursor) and draws one line chart per
   quantity of the scheduler's process: CPU, memory, host network, open files. */
(function () {
  "use strict";
  var KEEP = 7200;            // samples kept in the browser: an hour at the default 0.5 s
  var LEFT = 64, BOTTOM = 20, TOP = 6, RIGHT = 8;
  var $ = function (id) { return document.getElementById(id); };
  var names = ["time", "cpu", "memory", "read_bps", "write_bps", "num_fds"];
  var data = {};
  names.forEach(function (n) { data[n] = []; });
  var cursor = 0;

  function fmtBytes(n) {
    if (n < 1024) return Math.round(n) + " B";
    var units = ["KiB", "MiB", "GiB", "TiB"];
    for (var i = 0; i < units.length; i++) {
      n /= 1024;
      if (n < 1024 || i === units.length - 1) return n.toFixed(n < 10 ? 2 : 1) + " " + units[i];
    }
  }
  var CHARTS = {
    cpu: { series: [["cpu", "#0b6e7f", "cpu"]], fmt: function (v) { return v.toFixed(1) + "%"; } },
    memory: { series: [["memory", "#2b6cb0", "rss"]], fmt: fmtBytes, bytes: true },
    network: { series: [["read_bps", "#d62728", "received"], ["write_bps", "#1f77b4", "sent"]],
               fmt: function (v) { return fmtBytes(v) + "/s"; }, bytes: true },
    num_fds: { series: [["num_fds", "#8c564b", "open"]], fmt: function (v) { return String(Math.round(v)); } }
  };

  function niceMax(v) {
    if (v <= 0) return 1;
    var pow = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 4, 8, 10];   // quarters of each (the grid has 4 steps) read round
    for (var i = 0; i < steps.length; i++) if (steps[i] * pow >= v) return steps[i] * pow;
    return 10 * pow;
  }

  // a round number of KiB, MiB... so that the grid's labels read as round numbers too
  function niceBytes(v) {
    var unit = 1;
    while (v >= 1024 * unit && unit < Math.pow(1024, 4)) unit *= 1024;
    return niceMax(v / unit) * unit;
  }

  function drawChart(name) {
    var spec = CHARTS[name];
    var canvas = $("chart-" + name);
    var w = canvas.clientWidth || 500, h = canvas.clientHeight || 180;
    var dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var t = data.time, n = t.length;
    var plotW = Math.max(10, w - LEFT - RIGHT), plotH = Math.max(10, h - TOP - BOTTOM);
    var ymax = 0;
    spec.series.forEach(function (s) { data[s[0]].forEach(function (v) { if (v > ymax) ymax = v; }); });
    ymax = spec.bytes ? niceBytes(ymax) : niceMax(ymax);
    var t1 = n ? t[n - 1] : Date.now() / 1000, t0 = n ? Math.min(t[0], t1 - 10) : t1 - 60;
    var sx = plotW / Math.max(1e-6, t1 - t0), sy = plotH / ymax;
    // grid and y labels
    ctx.strokeStyle = "#e9ecf0";
    ctx.fillStyle = "#5d6773";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (var g = 0; g <= 4; g++) {
      var y = TOP + plotH - g * plotH / 4;
      ctx.beginPath(); ctx.moveTo(LEFT, y + 0.5); ctx.lineTo(LEFT + plotW, y + 0.5); ctx.stroke();
      ctx.fillText(spec.fmt(ymax * g / 4), LEFT - 6, y);
    }
    // x labels: seconds before the newest sample
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    var span = t1 - t0, step = niceMax(span / 5);
    for (var v = 0; v <= span + 1e-9; v += step) {
      var x = LEFT + plotW - v * sx;
      var label = v === 0 ? "now" : (v >= 120 ? "−" + +(v / 60).toFixed(1) + " min" : "−" + +v.toFixed(1) + " s");
      ctx.fillText(label, Math.max(LEFT + 12, x), TOP + plotH + 4);
    }
    var points = 0;
    spec.series.forEach(function (s) {
      var col = data[s[0]];
      ctx.strokeStyle = s[1];
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      for (var i = 0; i < n; i++) {
        var px = LEFT + (t[i] - t0) * sx, py = TOP + plotH - col[i] * sy;
        if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
      }
      ctx.stroke();
      points += n;
    });
    canvas.dataset.points = String(n);
    canvas.dataset.max = String(ymax);
    // the stats line: a swatch, then latest, min, max, mean of each series
    var stats = $("stats-" + name);
    stats.textContent = "";
    spec.series.forEach(function (s, k) {
      var col = data[s[0]];
      var item = document.createElement("span");
      item.className = "item";
      var sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = s[1];
      item.appendChild(sw);
      var text = s[2] + ": –";
      if (col.length) {
        var lo = Infinity, hi = -Infinity, sum = 0;
        col.forEach(function (x) { lo = Math.min(lo, x); hi = Math.max(hi, x); sum += x; });
        text = s[2] + " " + spec.fmt(col[col.length - 1]) + " (min " + spec.fmt(lo) + ", max " +
          spec.fmt(hi) + ", mean " + spec.fmt(sum / col.length) + ")";
      }
      item.appendChild(document.createTextNode((k ? "  " : "") + text));
      stats.appendChild(item);
    });
    return points;
  }

  function drawAll() { Object.keys(CHARTS).forEach(drawChart); }

  window.Shoal.poll(function () { return ["api/system?since=" + cursor]; }, function (docs) {
    var doc = docs[0];
    if (doc.cursor < cursor) names.forEach(function (n) { data[n] = []; });  // restarted
    cursor = doc.cursor;
    names.forEach(function (n) {
      var col = data[n];
      (doc.samples[n] || []).forEach(function (v) { col.push(v); });
      if (col.length > KEEP) col.splice(0, col.length - KEEP);
    });
    $("system-interval").textContent = "every " + doc.interval + " s";
    drawAll();
  });
  window.addEventListener("resize", drawAll);
})();
