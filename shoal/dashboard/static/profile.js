/* shoal profile: draws a statistical profile (dask's call-tree format) as an icicle chart
   in SVG. window.shoalProfile.draw(element, tree, detailElement) draws one tree (the
   dashboard's /profile page and client.profile(filename=...) both use it); on the
   dashboard, the page fetches /api/profile and redraws on "refresh". Click a bar to zoom
   into that call, click the top bar to zoom out. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var ROW = 18;
  var PALETTE = ["#e8a33d", "#e07b39", "#d9603b", "#c9483a", "#e3b04b", "#d98e3a"];
  function hash(s) {
    var h = 0;
    for (var i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
    return Math.abs(h);
  }
  function depth(node) {
    var d = 0;
    Object.keys(node.children).forEach(function (k) { d = Math.max(d, depth(node.children[k])); });
    return d + 1;
  }
  function label(node) {
    var d = node.description;
    if (node.identifier === "root") return "all (" + node.count + " samples)";
    var file = d.filename.split("/").pop();
    return d.name + " (" + file + ":" + d.line_number + ")";
  }
  function draw(element, tree, detail) {
    var top = tree;
    var stack = [];
    function render() {
      element.textContent = "";
      var width = element.clientWidth || 1000;
      var rows = depth(top);
      var svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("width", "100%");
      svg.setAttribute("height", String(rows * ROW));
      svg.setAttribute("viewBox", "0 0 " + width + " " + rows * ROW);
      svg.setAttribute("class", "profile-chart");
      function bar(node, x, w, level) {
        if (w < 0.5) return;
        var g = document.createElementNS(SVG, "g");
        g.setAttribute("class", "profile-node");
        g.dataset.name = node.description.name || "root";
        var rect = document.createElementNS(SVG, "rect");
        rect.setAttribute("x", x.toFixed(2));
        rect.setAttribute("y", String(level * ROW));
        rect.setAttribute("width", Math.max(w - 1, 0.5).toFixed(2));
        rect.setAttribute("height", String(ROW - 2));
        rect.setAttribute("fill", node.identifier === "root" ? "#9aa5b1" : PALETTE[hash(node.identifier) % PALETTE.length]);
        var title = document.createElementNS(SVG, "title");
        var d = node.description;
        title.textContent = label(node) + "\n" + node.count + " samples" +
          (d.line ? "\n" + d.line : "") + (d.filename ? "\n" + d.filename : "");
        g.appendChild(title);
        g.appendChild(rect);
        if (w > 40) {
          var text = document.createElementNS(SVG, "text");
          text.setAttribute("x", (x + 3).toFixed(2));
          text.setAttribute("y", String(level * ROW + 12));
          text.setAttribute("class", "profile-label");
          var name = label(node);
          var fits = Math.floor((w - 6) / 6.5);
          text.textContent = name.length > fits ? name.slice(0, Math.max(fits - 1, 0)) + "…" : name;
          g.appendChild(text);
        }
        g.addEventListener("click", function () {
          if (node === top && stack.length) { top = stack.pop(); } else if (node !== top) { stack.push(top); top = node; }
          render();
        });
        g.addEventListener("mouseenter", function () {
          if (detail) detail.textContent = title.textContent.split("\n").join(" · ");
        });
        svg.appendChild(g);
        var cx = x;
        Object.keys(node.children).map(function (k) { return node.children[k]; })
          .sort(function (a, b) { return b.count - a.count; })
          .forEach(function (c) {
            var cw = node.count ? w * c.count / node.count : 0;
            bar(c, cx, cw, level + 1);
            cx += cw;
          });
      }
      if (!top.count) {
        element.textContent = "No samples yet: the profile fills while tasks run.";
        return;
      }
      bar(top, 0, width, 0);
      element.appendChild(svg);
    }
    render();
  }
  window.shoalProfile = { draw: draw };

  function loadPage() {
    var chart = document.getElementById("profile");
    if (!chart || !chart.dataset.api) return;
    var detail = document.getElementById("profile-detail");
    var keySelect = document.getElementById("profile-key");
    function refresh() {
      var url = chart.dataset.api + (keySelect && keySelect.value ? "?key=" + encodeURIComponent(keySelect.value) : "");
      fetch(url, { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (doc) {
        if (keySelect) {
          var keep = keySelect.value;
          keySelect.textContent = "";
          [""].concat(doc.prefixes).forEach(function (p) {
            var o = document.createElement("option");
            o.value = p;
            o.textContent = p || "all tasks";
            keySelect.appendChild(o);
          });
          keySelect.value = keep;
        }
        draw(chart, doc.tree, detail);
        chart.dataset.count = String(doc.tree.count);
      }).catch(function (e) { chart.textContent = "could not load the profile: " + e; });
    }
    var button = document.getElementById("profile-refresh");
    if (button) button.addEventListener("click", refresh);
    if (keySelect) keySelect.addEventListener("change", refresh);
    refresh();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", loadPage);
  else loadPage();
})();
