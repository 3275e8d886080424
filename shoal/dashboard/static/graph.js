/* shoal /graph: polls /api/graph and draws the scheduler's tasks as nodes coloured by
   state, with an edge from each dependency. The structure (keys, edges, priority order)
   comes only when it changed (the page passes back the "layout" it holds); otherwise an
   answer is one state code per node. Past the scheduler's limit it shows a notice and the
   counts by state instead. Layout: layers by depth (longest path from a root), roots in
   priority order, every other node near the mean position of its dependencies. */
(function () {
  "use strict";
  var COLORS = {
    released: "#c9ced6", waiting: "#9aa3ad", queued: "#6c7a89", "no-worker": "#e8a33d",
    processing: "#2ca02c", memory: "#2b6cb0", erred: "#d62728", scattering: "#17becf"
  };
  var $ = function (id) { return document.getElementById(id); };
  var canvas = $("graph"), tooltip = $("graph-tooltip");
  var layoutId = "", graph = null, states = [], stateNames = [];

  function fmtInt(n) { return Number(n).toLocaleString("en-US"); }
  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }[c];
    });
  }

  // ------------------------------------------------------------------ layout
  function layout(doc) {
    var n = doc.nodes.length, e = doc.edges, rank = doc.rank;
    var deps = [], dependents = [], indeg = new Int32Array(n), depth = new Int32Array(n);
    for (var i = 0; i < n; i++) { deps.push([]); dependents.push([]); }
    for (var k = 0; k + 1 < e.length; k += 2) {
      deps[e[k + 1]].push(e[k]);
      dependents[e[k]].push(e[k + 1]);
      indeg[e[k + 1]]++;
    }
    // depth = longest path from a root (Kahn's order; a DAG has no cycle to leave nodes out)
    var queue = [];
    for (i = 0; i < n; i++) if (!indeg[i]) queue.push(i);
    for (var q = 0; q < queue.length; q++) {
      var a = queue[q];
      dependents[a].forEach(function (b) {
        if (depth[a] + 1 > depth[b]) depth[b] = depth[a] + 1;
        if (--indeg[b] === 0) queue.push(b);
      });
    }
    var layers = [];
    for (i = 0; i < n; i++) (layers[depth[i]] = layers[depth[i]] || []).push(i);
    var pos = new Float64Array(n), maxPos = 0;
    layers.forEach(function (layer, d) {
      if (!layer) return;
      var bary = new Map();
      layer.forEach(function (j) {
        if (!d || !deps[j].length) { bary.set(j, -1); return; }
        var s = 0;
        deps[j].forEach(function (p) { s += pos[p]; });
        bary.set(j, s / deps[j].length);
      });
      layer.sort(function (x, y) { return (bary.get(x) - bary.get(y)) || (rank[x] - rank[y]); });
      var next = 0;
      layer.forEach(function (j) {
        pos[j] = Math.max(bary.get(j), next);
        next = pos[j] + 1;
        if (pos[j] > maxPos) maxPos = pos[j];
      });
    });
    var nlayers = layers.length;
    // Lay layers out across the wider dimension's other axis: a wide, shallow graph (a map,
    // a tree reduction) reads best top to bottom, a deep one left to right.
    var rows = maxPos + 1 > 2 * nlayers;
    return { n: n, edges: e, depth: depth, pos: pos, maxPos: maxPos, nlayers: nlayers, rows: rows,
             keys: doc.nodes, prefix: doc.prefix, prefixes: doc.prefixes, xy: null };
  }

  // ------------------------------------------------------------------ drawing
  function draw() {
    var g = graph;
    var w = canvas.clientWidth || canvas.parentNode.clientWidth || 900;
    var h;
    if (document.body.classList.contains("individual")) {   // /individual-graph: the window
      h = Math.max(120, window.innerHeight - canvas.getBoundingClientRect().top - 8);
    } else if (!g || !g.n) { h = 60; } else if (g.rows) { h = Math.min(760, Math.max(240, g.nlayers * 60)); }
    else { h = Math.min(760, Math.max(240, (g.maxPos + 1) * 12)); }
    var dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
      canvas.style.height = h + "px";
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var counts = {};
    stateNames.forEach(function (s) { counts[s] = 0; });
    if (!g || !g.n) { finish(counts, 0, 0); return; }
    var pad = 12, iw = w - 2 * pad, ih = h - 2 * pad;
    var along = g.rows ? iw : ih, across = g.rows ? ih : iw;   // along: positions in a layer
    var stepPos = along / Math.max(1, g.maxPos + 1), stepLayer = across / Math.max(1, g.nlayers);
    var size = Math.max(2, Math.min(14, Math.min(stepPos, stepLayer) * 0.7 * view.k));
    var xy = new Float64Array(2 * g.n);   // screen positions, after the zoom
    for (var i = 0; i < g.n; i++) {
      var p = pad + (g.pos[i] + 0.5) * stepPos, l = pad + (g.depth[i] + 0.5) * stepLayer;
      xy[2 * i] = (g.rows ? p : l) * view.k + view.x;
      xy[2 * i + 1] = (g.rows ? l : p) * view.k + view.y;
    }
    g.xy = xy;
    g.size = size;
    ctx.strokeStyle = "rgba(29,35,43,0.22)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    var e = g.edges;
    for (var k = 0; k + 1 < e.length; k += 2) {
      ctx.moveTo(xy[2 * e[k]], xy[2 * e[k] + 1]);
      ctx.lineTo(xy[2 * e[k + 1]], xy[2 * e[k + 1] + 1]);
    }
    ctx.stroke();
    for (i = 0; i < g.n; i++) {
      var s = stateNames[states[i]] || "released";
      counts[s] = (counts[s] || 0) + 1;
      ctx.fillStyle = COLORS[s] || "#7f7f7f";
      ctx.fillRect(xy[2 * i] - size / 2, xy[2 * i + 1] - size / 2, size, size);
    }
    finish(counts, g.n, e.length / 2);
  }

  function finish(counts, nodes, edges) {
    canvas.dataset.nodes = String(nodes);
    canvas.dataset.zoom = view.k.toFixed(2);
    canvas.dataset.edges = String(edges);
    Object.keys(counts).forEach(function (s) { canvas.setAttribute("data-state-" + s, String(counts[s])); });
    var legend = $("graph-legend");
    legend.textContent = "";
    stateNames.forEach(function (s) {
      var item = document.createElement("span");
      item.className = "item";
      item.dataset.state = s;
      var sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = COLORS[s] || "#7f7f7f";
      item.appendChild(sw);
      item.appendChild(document.createTextNode(s + " " + fmtInt(counts[s] || 0)));
      legend.appendChild(item);
    });
  }

  function showNotice(doc) {
    var notice = $("graph-notice");
    if (!doc.too_many) { notice.hidden = true; return; }
    notice.hidden = false;
    notice.textContent = "";
    var why = doc.tasks > doc.limit
      ? "The scheduler holds " + fmtInt(doc.tasks) + " tasks, more than the " + fmtInt(doc.limit) +
        " this page draws"
      : "The " + fmtInt(doc.tasks) + " tasks have " + fmtInt(doc.edge_count) +
        " dependencies, too many edges to draw";
    notice.appendChild(document.createTextNode(why +
      " (dask's distributed.dashboard.graph-max-items sets the limit). The graph is not " +
      "computed beyond it, so that a big graph costs the scheduler nothing here; it is " +
      "drawn again once the tasks fall below the limit."));
    var c = document.createElement("div");
    c.className = "counts";
    c.textContent = "Tasks by state: " + Object.keys(doc.by_state)
      .filter(function (s) { return doc.by_state[s]; })
      .map(function (s) { return fmtInt(doc.by_state[s]) + " " + s; }).join(", ");
    notice.appendChild(c);
  }

  // ------------------------------------------------------------------ zoom and pan
  // The wheel zooms around the pointer, a drag pans, a double click shows it all again.
  var view = { k: 1, x: 0, y: 0 }, drag = null;
  canvas.addEventListener("wheel", function (ev) {
    if (!graph) return;
    ev.preventDefault();
    var rect = canvas.getBoundingClientRect();
    var mx = ev.clientX - rect.left, my = ev.clientY - rect.top;
    var k = Math.max(1, Math.min(64, view.k * Math.exp(-ev.deltaY * 0.002)));
    view.x = mx - (mx - view.x) * k / view.k;
    view.y = my - (my - view.y) * k / view.k;
    view.k = k;
    if (k === 1) { view.x = 0; view.y = 0; }
    draw();
  }, { passive: false });
  canvas.addEventListener("mousedown", function (ev) {
    drag = { x: ev.clientX - view.x, y: ev.clientY - view.y };
  });
  window.addEventListener("mouseup", function () { drag = null; });
  canvas.addEventListener("dblclick", function () { view = { k: 1, x: 0, y: 0 }; draw(); });

  // ------------------------------------------------------------------ hover
  canvas.addEventListener("mousemove", function (ev) {
    if (drag && view.k > 1) {
      view.x = ev.clientX - drag.x;
      view.y = ev.clientY - drag.y;
      draw();
      return;
    }
    var g = graph;
    if (!g || !g.xy) { tooltip.style.display = "none"; return; }
    var rect = canvas.getBoundingClientRect();
    var x = ev.clientX - rect.left, y = ev.clientY - rect.top;
    var best = -1, bestD = Math.max(6, g.size) * Math.max(6, g.size);
    for (var i = 0; i < g.n; i++) {
      var dx = g.xy[2 * i] - x, dy = g.xy[2 * i + 1] - y, d = dx * dx + dy * dy;
      if (d < bestD) { bestD = d; best = i; }
    }
    if (best < 0) { tooltip.style.display = "none"; return; }
    tooltip.innerHTML = "<b>" + escapeHtml(g.keys[best]) + "</b><br>" +
      escapeHtml(stateNames[states[best]] || "?") + " · " + escapeHtml(g.prefixes[g.prefix[best]]);
    tooltip.style.display = "block";
    var left = x + 14;
    if (left + tooltip.offsetWidth > rect.width) left = x - tooltip.offsetWidth - 10;
    tooltip.style.left = left + "px";
    tooltip.style.top = (y + 12) + "px";
  });
  canvas.addEventListener("mouseleave", function () { tooltip.style.display = "none"; });

  // ------------------------------------------------------------------ polling
  window.Shoal.poll(function () { return ["api/graph?known=" + encodeURIComponent(layoutId)]; },
    function (docs) {
      var doc = docs[0];
      var t0 = performance.now();
      stateNames = doc.states;
      showNotice(doc);
      if (doc.too_many) {
        graph = null; states = []; layoutId = "";
      } else {
        if (doc.nodes) graph = layout(doc);
        layoutId = doc.layout;
        states = doc.state;
      }
      draw();
      $("graph-summary").textContent = doc.too_many
        ? fmtInt(doc.tasks) + " tasks: too many to draw"
        : doc.tasks ? fmtInt(doc.tasks) + " tasks · " + fmtInt(doc.edge_count) +
          " dependencies · flowing " + (graph && graph.rows ? "top to bottom" : "left to right")
        : "no tasks: the scheduler is empty";
      // exposed for tests and for anyone checking the page stays cheap
      document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
    });
  window.addEventListener("resize", draw);
})();
