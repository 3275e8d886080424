/* shoal /groups and /individual-groups: polls /api/groups and draws one progress row per
   task group (the newest first, at most the page's data-limit), with /status's rows. */
(function () {
  "use strict";
  var S = window.Shoal, TS = window.ShoalTaskStream;
  var box = document.getElementById("groups");
  var limit = Number(box.dataset.limit) || 100;

  S.poll(function () { return ["api/groups?limit=" + limit]; }, function (docs) {
    var doc = docs[0];
    var frag = document.createDocumentFragment();
    doc.rows.forEach(function (g) { frag.appendChild(S.progressRow(g.name, g, TS.prefixColor(g.prefix), "group")); });
    if (!doc.rows.length) frag.appendChild(S.el("div", "empty-note", "No tasks yet."));
    if (doc.groups > doc.rows.length) {
      frag.appendChild(S.el("div", "more", "and " + S.fmtInt(doc.groups - doc.rows.length) +
        " older groups (this page shows the newest " + S.fmtInt(doc.limit) + " at most)"));
    }
    box.textContent = "";
    box.appendChild(frag);
    box.dataset.groups = String(doc.groups);
    document.getElementById("groups-summary").textContent = S.fmtInt(doc.groups) +
      (doc.groups === 1 ? " group" : " groups") + " · newest first · at most " + S.fmtInt(doc.limit) + " shown";
  });
})();
