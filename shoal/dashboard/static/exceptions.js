/* shoal /exceptions and /individual-exceptions: polls /api/exceptions and lists the latest
   failures, newest first: when, task, exception (its traceback on a click), worker. */
(function () {
  "use strict";
  var S = window.Shoal, el = S.el;
  var table = document.getElementById("exceptions");
  var limit = Number(table.dataset.limit) || 100;
  var shown = "";   // what is drawn: redrawn only when it changes (keeps tracebacks open)

  function when(t) {
    if (!t) return "";
    var d = new Date(t * 1000);
    return d.toLocaleTimeString("en-GB") + " " + d.toISOString().slice(0, 10);
  }

  function row(e) {
    var tr = el("tr");
    tr.dataset.key = e.key;
    tr.appendChild(el("td", "mono", when(e.time)));
    tr.appendChild(el("td", "mono", e.key));
    var cell = el("td", "exc");
    var details = el("details");
    var type = e.type.split(".").pop();
    details.appendChild(el("summary", null, type + (e.exception ? ": " + e.exception : "")));
    details.appendChild(el("pre", "traceback", e.traceback || "(no traceback: the scheduler raised it)"));
    cell.appendChild(details);
    tr.appendChild(cell);
    tr.appendChild(el("td", "mono", e.worker.replace(/^[a-z]+:\/\//, "")));
    return tr;
  }

  S.poll(function () { return ["api/exceptions?limit=" + limit]; }, function (docs) {
    var doc = docs[0];
    var id = doc.count + "\u0000" + doc.rows.map(function (e) { return e.key + "@" + e.time; }).join("\u0000");
    document.getElementById("exceptions-summary").textContent = doc.rows.length
      ? S.fmtInt(doc.rows.length) + " shown, newest first · the scheduler keeps the latest " +
        S.fmtInt(doc.kept) + " · this page shows " + S.fmtInt(doc.limit) + " at most"
      : "none: no task has failed (the scheduler keeps the latest " + S.fmtInt(doc.kept) + ")";
    table.dataset.count = String(doc.rows.length);
    if (id === shown) return;
    shown = id;
    var body = table.tBodies[0];
    var frag = document.createDocumentFragment();
    doc.rows.forEach(function (e) { frag.appendChild(row(e)); });
    if (!doc.rows.length) {
      var tr = el("tr", "empty");
      var td = el("td", null, "No task has failed.");
      td.colSpan = 4;
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    body.textContent = "";
    body.appendChild(frag);
  });
})();
