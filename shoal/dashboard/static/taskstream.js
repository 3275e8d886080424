/* shoal task stream: one row per worker thread, one bar per task, drawn on a canvas.
 * Shared by the live /status page and the standalone performance report (inlined there).
 * Exposes window.ShoalTaskStream = {TaskStream, prefixColor, TRANSFER_COLOR}.
 */
(function (global) {
  "use strict";

  // Categorical colours; red is kept out: it means "transfer" (and "erred" in progress bars).
  var PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#5aa0d8", "#f4a259",
    "#6cc46c", "#b39ddb", "#c49c94", "#f7a6d2", "#4fc9d6", "#a6a63a"
  ];
  var TRANSFER_COLOR = "#d62728";
  var GUTTER = 150;      // px on the left for row labels
  var AXIS = 22;         // px at the bottom for the time axis
  var MAX_PLOT = 380;    // px: rows shrink to fit, down to MIN_ROW each
  var MIN_ROW = 2, MAX_ROW = 18;

  function hashString(s) {
    var h = 0x811c9dc5;
    for (var i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    return h >>> 0;
  }

  var colorCache = new Map();
  function prefixColor(prefix) {
    var c = colorCache.get(prefix);
    if (c === undefined) {
      c = PALETTE[hashString(prefix) % PALETTE.length];
      colorCache.set(prefix, c);
    }
    return c;
  }

  // How a worker is labelled: its name ("worker 3" for LocalCluster's numeric names), else
  // its address without the scheme.
  function shortWorker(address, names) {
    var name = names && names.get(address);
    if (name !== undefined && name !== null && String(name) !== address) {
      return /^\d+$/.test(String(name)) ? "worker " + name : String(name);
    }
    return address.replace(/^[a-z]+:\/\//, "");
  }

  function niceStep(span, target) {
    var raw = span / Math.max(1, target);
    var pow = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * pow >= raw) return steps[i] * pow;
    return 10 * pow;
  }

  function formatSeconds(s) {
    if (s < 1e-3) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + " ms";
    if (s < 120) return s.toFixed(s < 10 ? 2 : 1) + " s";
    return (s / 60).toFixed(1) + " min";
  }

  function tickLabel(v, step) {
    if (step >= 60 && v >= 60) return +(v / 60).toFixed(step % 60 ? 1 : 0) + " min";
    if (step >= 1 || v >= 1) {
      var digits = step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(step)));
      return v.toFixed(digits) + " s";
    }
    return +(v * 1000).toFixed(step >= 0.001 ? 0 : 2) + " ms";
  }

  function TaskStream(canvas, options) {
    options = options || {};
    this.canvas = canvas;
    this.maxRecords = options.maxRecords || 20000;
    this.records = [];
    this.rowCounts = new Map();  // row key (worker NUL thread) -> {n: records kept, key}
    this.workers = [];        // [{address, name, nthreads}] from the snapshot, so idle threads show
    this.names = new Map();
    this.rowIndex = new Map();
    this.rowKeys = [];
    this.layout = null;
    this.lastDrawn = 0;
    this.visiblePrefixes = new Map();
    this.relativeAxis = options.relativeAxis !== false;
    this.maxPlot = options.maxPlot || MAX_PLOT;   // the /tasks page draws taller rows
    this.maxRow = options.maxRow || MAX_ROW;
  }

  TaskStream.prototype.clear = function () {
    this.records = [];
    this.rowCounts = new Map();
  };

  function rowKey(r) { return r.worker + "\u0000" + (r.thread || 0); }

  // Forget the row keys of records leaving the buffer (the rows of a departed worker go
  // with its last record), so drawing never walks every record to find the rows.
  TaskStream.prototype._forget = function (gone) {
    var counts = this.rowCounts;
    for (var i = 0; i < gone.length; i++) {
      var k = gone[i]._row, row = counts.get(k);
      if (--row.n === 0) counts.delete(k);
    }
  };

  TaskStream.prototype.setWorkers = function (workers) {
    this.workers = workers.map(function (w) {
      return { address: w.address, name: w.name, nthreads: w.nthreads };
    });
    this.names = new Map(this.workers.map(function (w) { return [w.address, w.name]; }));
  };

  TaskStream.prototype.add = function (records) {
    var counts = this.rowCounts;
    for (var i = 0; i < records.length; i++) {
      var r = records[i], k = rowKey(r), row = counts.get(k);
      r._row = k;
      if (row === undefined) counts.set(k, { n: 1, key: [r.worker, r.thread || 0] });
      else row.n++;
      this.records.push(r);
    }
    if (this.records.length > this.maxRecords) {
      this._forget(this.records.splice(0, this.records.length - this.maxRecords));
    }
  };

  // Drop records that ended before `oldest` (they can no longer be on screen).
  TaskStream.prototype.prune = function (oldest) {
    var recs = this.records;
    if (recs.length && recs[0].stop < oldest) {
      this._forget(recs.filter(function (r) { return r.stop < oldest; }));
      this.records = recs.filter(function (r) { return r.stop >= oldest; });
    }
  };

  TaskStream.prototype._rows = function () {
    var keys = new Map();
    this.workers.forEach(function (w) {
      for (var t = 0; t < Math.max(1, w.nthreads); t++) keys.set(w.address + "\u0000" + t, [w.address, t]);
    });
    // rows of records from workers no longer listed: O(rows), not O(records), every frame
    this.rowCounts.forEach(function (row, k) { if (!keys.has(k)) keys.set(k, row.key); });
    var list = Array.from(keys.values());
    list.sort(function (a, b) { return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]; });
    this.rowKeys = list;
    this.rowIndex = new Map(list.map(function (k, i) { return [k[0] + "\u0000" + k[1], i]; }));
    return list;
  };

  // Draw the time range [t0, t1] (unix seconds). `now` (optional) labels the axis relative to it.
  TaskStream.prototype.draw = function (t0, t1, now) {
    var canvas = this.canvas;
    var rows = this._rows();
    var nrows = Math.max(1, rows.length);
    var rowH = Math.max(MIN_ROW, Math.min(this.maxRow, Math.floor(this.maxPlot / nrows)));
    var plotH = rowH * nrows;
    var cssW = canvas.clientWidth || canvas.parentNode.clientWidth || 800;
    var cssH = plotH + AXIS + 4;
    var dpr = global.devicePixelRatio || 1;
    if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssH * dpr);
      canvas.style.height = cssH + "px";
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    var plotW = Math.max(10, cssW - GUTTER - 8);
    var span = Math.max(1e-6, t1 - t0);
    var scale = plotW / span;
    this.layout = { t0: t0, t1: t1, rowH: rowH, plotH: plotH, plotW: plotW, scale: scale, top: 2 };

    // row backgrounds, alternating per worker so threads of one worker read as a group
    var workerBand = -1, prevWorker = null;
    for (var i = 0; i < rows.length; i++) {
      if (rows[i][0] !== prevWorker) { workerBand++; prevWorker = rows[i][0]; }
      ctx.fillStyle = workerBand % 2 ? "#f1f3f6" : "#fafbfc";
      ctx.fillRect(GUTTER, 2 + i * rowH, plotW, rowH);
    }
    // labels
    ctx.fillStyle = "#1d232b";
    ctx.textBaseline = "middle";
    ctx.font = "11px ui-monospace, Menlo, Consolas, monospace";
    if (rowH >= 10) {
      prevWorker = null;
      for (i = 0; i < rows.length; i++) {
        var y0 = 2 + i * rowH + rowH / 2;
        if (rows[i][0] !== prevWorker) {
          var label = shortWorker(rows[i][0], this.names);
          ctx.fillStyle = "#1d232b";
          ctx.fillText(label.length > 18 ? label.slice(0, 17) + "…" : label, 4, y0);
        }
        prevWorker = rows[i][0];
        ctx.fillStyle = "#5d6773";
        ctx.textAlign = "right";
        // thread -1 is the row a worker's incoming transfers are drawn on
        ctx.fillText(rows[i][1] < 0 ? "transfers" : "t" + rows[i][1], GUTTER - 8, y0);
        ctx.textAlign = "start";
      }
    } else if (rows.length) {
      ctx.fillText(rows.length + " threads", 4, 2 + plotH / 2);
    }

    // bars
    var drawn = 0;
    var visible = new Map();   // prefix -> bars on screen, for the legend
    var recs = this.records;
    var pad = rowH >= 6 ? 1 : 0;
    var h = rowH - 2 * pad;
    // Per row, the compute bar not yet filled: bars of one colour that touch or overlap
    // are filled as one (many tasks share a pixel at a high rate; the picture is the same).
    var spanColor = new Array(rows.length), spanX0 = new Array(rows.length);
    var spanX1 = new Array(rows.length);
    function fill(row) {
      ctx.fillStyle = spanColor[row];
      ctx.fillRect(spanX0[row], 2 + row * rowH + pad, spanX1[row] - spanX0[row], h);
      spanColor[row] = undefined;
    }
    for (i = 0; i < recs.length; i++) {
      var r = recs[i];
      if (r.stop < t0 || r.start > t1) continue;
      var row = this.rowIndex.get(r._row);
      if (row === undefined) continue;
      var x0 = GUTTER + Math.max(0, (r.start - t0) * scale);
      var x1 = GUTTER + Math.min(plotW, (r.stop - t0) * scale);
      var w = Math.max(1, x1 - x0);
      if (r.kind === "transfer") {
        ctx.fillStyle = TRANSFER_COLOR;
        ctx.globalAlpha = 0.75;
        ctx.fillRect(x0, 2 + row * rowH + pad + h * 0.25, w, Math.max(1, h * 0.5));
        ctx.globalAlpha = 1;
      } else {
        var color = prefixColor(r.prefix);
        if (spanColor[row] === color && x0 <= spanX1[row] && x0 + w >= spanX0[row]) {
          if (x0 < spanX0[row]) spanX0[row] = x0;
          if (x0 + w > spanX1[row]) spanX1[row] = x0 + w;
        } else {
          if (spanColor[row] !== undefined) fill(row);
          spanColor[row] = color;
          spanX0[row] = x0;
          spanX1[row] = x0 + w;
        }
        visible.set(r.prefix, (visible.get(r.prefix) || 0) + 1);
      }
      drawn++;
    }
    for (i = 0; i < rows.length; i++) if (spanColor[i] !== undefined) fill(i);
    this.lastDrawn = drawn;
    this.visiblePrefixes = visible;

    // axis
    var axisY = 2 + plotH;
    ctx.strokeStyle = "#9aa3ad";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(GUTTER, axisY + 0.5);
    ctx.lineTo(GUTTER + plotW, axisY + 0.5);
    ctx.stroke();
    var origin = now !== undefined ? now : t0;
    var step = niceStep(span, Math.max(2, Math.floor(plotW / 90)));
    var first = Math.ceil((t0 - origin) / step) * step;
    ctx.fillStyle = "#5d6773";
    ctx.textBaseline = "top";
    ctx.textAlign = "center";
    ctx.font = "11px system-ui, sans-serif";
    for (var v = first; origin + v <= t1 + 1e-9; v += step) {
      var x = GUTTER + (origin + v - t0) * scale;
      ctx.beginPath();
      ctx.moveTo(x + 0.5, axisY);
      ctx.lineTo(x + 0.5, axisY + 4);
      ctx.stroke();
      var text;
      if (Math.abs(v) < step / 2) text = now !== undefined ? "now" : "0 s";
      else text = (now !== undefined ? "−" : "") + tickLabel(Math.abs(v), step);
      ctx.fillText(text, Math.min(Math.max(x, GUTTER + 14), GUTTER + plotW - 14), axisY + 6);
    }
    ctx.textAlign = "start";
    canvas.dataset.drawn = String(drawn);
    canvas.dataset.records = String(recs.length);
    canvas.dataset.rows = String(rows.length);
    return drawn;
  };

  // The record under canvas pixel (x, y) in CSS pixels, or null.
  TaskStream.prototype.hit = function (x, y) {
    var L = this.layout;
    if (!L || x < GUTTER) return null;
    var row = Math.floor((y - L.top) / L.rowH);
    if (row < 0 || row >= this.rowKeys.length) return null;
    var key = this.rowKeys[row];
    var t = L.t0 + (x - GUTTER) / L.scale;
    var tol = 2 / L.scale;
    var best = null;
    for (var i = this.records.length - 1; i >= 0; i--) {
      var r = this.records[i];
      if (r.worker === key[0] && (r.thread || 0) === key[1] && r.start - tol <= t && t <= r.stop + tol) {
        best = r;
        break;
      }
    }
    return best;
  };

  TaskStream.prototype.describe = function (r) {
    var kind = r.kind === "transfer" ? "transfer" : "compute";
    return "<b>" + escapeHtml(r.key) + "</b><br>" + kind + " · " + formatSeconds(r.stop - r.start) +
      "<br>" + escapeHtml(shortWorker(r.worker, this.names)) + " thread " + (r.thread || 0);
  };

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }[c];
    });
  }

  // Show a tooltip element over the canvas for the bar under the mouse.
  TaskStream.prototype.attachTooltip = function (tooltip) {
    var self = this;
    this.canvas.addEventListener("mousemove", function (ev) {
      var rect = self.canvas.getBoundingClientRect();
      var x = ev.clientX - rect.left, y = ev.clientY - rect.top;
      var r = self.hit(x, y);
      if (!r) { tooltip.style.display = "none"; return; }
      tooltip.innerHTML = self.describe(r);
      tooltip.style.display = "block";
      var left = x + 14;
      if (left + tooltip.offsetWidth > rect.width) left = x - tooltip.offsetWidth - 10;
      tooltip.style.left = left + "px";
      tooltip.style.top = (y + 12) + "px";
    });
    this.canvas.addEventListener("mouseleave", function () { tooltip.style.display = "none"; });
  };

  // Fill `el` with one swatch per prefix (plus the transfer swatch), at most `limit` of them.
  function renderLegend(el, prefixes, limit) {
    el.textContent = "";
    var sorted = prefixes.slice().sort();
    var shown = limit ? sorted.slice(0, limit) : sorted;
    shown.forEach(function (p) {
      el.appendChild(legendItem(prefixColor(p), p, p));
    });
    el.appendChild(legendItem(TRANSFER_COLOR, "transfer", null));
    if (shown.length < sorted.length) {
      var more = document.createElement("span");
      more.className = "item";
      more.textContent = "+ " + (sorted.length - shown.length) + " more prefixes on screen";
      el.appendChild(more);
    }
  }

  function legendItem(color, text, prefix) {
    var item = document.createElement("span");
    item.className = "item";
    if (prefix !== null) item.dataset.prefix = prefix;
    var sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = color;
    item.appendChild(sw);
    item.appendChild(document.createTextNode(text));
    return item;
  }

  global.ShoalTaskStream = {
    TaskStream: TaskStream,
    prefixColor: prefixColor,
    workerLabel: function (w) { return shortWorker(w.address, new Map([[w.address, w.name]])); },
    renderLegend: renderLegend,
    formatSeconds: formatSeconds,
    escapeHtml: escapeHtml,
    TRANSFER_COLOR: TRANSFER_COLOR
  };
})(window);
