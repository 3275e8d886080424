/* shoal /workers: keeps the server-rendered table fresh by polling /api/snapshot. */
(function () {
  "use strict";
  function fmtBytes(n) {
    if (n < 1024) return Math.round(n) + " B";
    var units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    for (var i = 0; i < units.length; i++) {
      n /= 1024;
      if (n < 1024 || i === units.length - 1) return n.toFixed(2) + " " + units[i];
    }
  }
  function fmtAgo(s) {
    s = Math.max(0, s);
    if (s < 1) return "just now";
    if (s < 120) return Math.round(s) + " s ago";
    if (s < 7200) return Math.round(s / 60) + " min ago";
    return (s / 3600).toFixed(1) + " h ago";
  }
  function td(text, cls, title) {
    var c = document.createElement("td");
    if (cls) c.className = cls;
    if (title) c.title = title;
    c.textContent = text;
    return c;
  }
  function render(snap) {
    var now = snap.scheduler.now;
    var body = document.querySelector("#workers-table tbody");
    var frag = document.createDocumentFragment();
    snap.workers.slice().sort(function (a, b) { return a.address < b.address ? -1 : 1; }).forEach(function (w) {
      var tr = document.createElement("tr");
      tr.dataset.worker = w.address;
      var mem = w.memory_limit ? fmtBytes(w.memory_process) + " / " + fmtBytes(w.memory_limit) : fmtBytes(w.memory_process);
      if (w.memory_spilled) mem += " + " + fmtBytes(w.memory_spilled) + " spilled";
      if (w.status === "paused") mem += " · paused";
      var memTitle = "managed " + fmtBytes(w.memory_managed) + ", unmanaged " +
        fmtBytes(Math.max(0, w.memory_process - w.memory_managed)) + ", spilled to disk " +
        fmtBytes(w.memory_spilled || 0) + (w.status === "paused" ? "; paused (memory past its pause threshold)" : "");
      [td(w.address, "mono"), td(String(w.name)), td(String(w.nthreads), "num"),
       td(mem, "num", memTitle), td(Math.round(w.cpu) + "%", "num"),
       td(String(w.processing), "num"), td(String(w.in_memory), "num"), td(fmtAgo(now - w.last_seen))]
        .forEach(function (c) { tr.appendChild(c); });
      frag.appendChild(tr);
    });
    if (!snap.workers.length) {
      var tr = document.createElement("tr");
      tr.className = "empty";
      var c = td("No workers connected");
      c.colSpan = 8;
      tr.appendChild(c);
      frag.appendChild(tr);
    }
    body.textContent = "";
    body.appendChild(frag);
    var t = snap.totals;
    document.getElementById("workers-summary").textContent = t.workers + " workers · " + t.nthreads +
      " threads · " + fmtBytes(t.memory_process) + " / " + fmtBytes(t.memory_limit);
  }
  window.Shoal.poll(function () { return ["api/snapshot"]; },
    function (docs) { render(docs[0]); }, { delay: window.Shoal.POLL_MS });
})();
