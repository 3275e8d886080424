/* shoal dashboard: what every page shares. window.Shoal = {getJSON, poll, fmtBytes, fmtInt,
   el, progressRow}. Loaded before each page's own script. */
(function (global) {
  "use strict";
  var POLL_MS = 1000;   // refresh period of every live view
  var RETRY_MS = 2000;  // after a failed poll

  // GET a JSON document; rejects with a message naming the URL on an HTTP error.
  function getJSON(url) {
    return fetch(url, { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error(url + " answered HTTP " + r.status);
      return r.json();
    });
  }

  // Poll `urls()` (a function: URLs may carry a cursor) every POLL_MS, handing the decoded
  // answers to onData(list, startedMs); after a failure, onError(err) and retry in RETRY_MS.
  // Counts polls in <body data-polls> for tests and for anyone checking the page is live.
  // Ends: never on its own; the page closing ends it.
  function poll(urls, onData, options) {
    options = options || {};
    var polls = 0;
    function once() {
      var started = Date.now();
      Promise.all(urls().map(getJSON))
        .then(function (docs) {
          onData(docs, started);
          polls++;
          document.body.dataset.polls = String(polls);
          global.setTimeout(once, options.interval || POLL_MS);
        })
        .catch(function (err) {
          if (options.onError) options.onError(err);
          global.setTimeout(once, RETRY_MS);
        });
    }
    if (options.delay) global.setTimeout(once, options.delay); else once();
  }

  function fmtBytes(n) {
    if (n < 1024) return Math.round(n) + " B";
    var units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    for (var i = 0; i < units.length; i++) {
      n /= 1024;
      if (n < 1024 || i === units.length - 1) return n.toFixed(n < 10 ? 2 : 1) + " " + units[i];
    }
  }
  function fmtInt(n) { return Number(n).toLocaleString("en-US"); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // One progress row (name, bar of done/running/erred, counts) for counts by state
  // (PrefixCounts): /status draws one per prefix, /groups one per task group.
  function progressRow(name, c, color, attr) {
    var total = c.released + c.waiting + c.queued + c.processing + c.memory + c.erred;
    var row = el("div", "prow");
    row.dataset[attr || "prefix"] = name;
    row.dataset.memory = c.memory;
    row.dataset.processing = c.processing;
    row.dataset.waiting = c.waiting + c.queued;
    row.dataset.erred = c.erred;
    row.dataset.total = total;
    var label = el("div", "name", name);
    label.title = name;
    row.appendChild(label);
    var bar = el("div", "bar");
    [["memory", c.memory], ["released", c.released], ["erred", c.erred], ["processing", c.processing]]
      .forEach(function (seg) {
        if (!seg[1] || !total) return;
        var s = el("span", seg[0]);
        s.style.width = (100 * seg[1] / total) + "%";
        if (seg[0] !== "erred") s.style.backgroundColor = color;
        bar.appendChild(s);
      });
    bar.title = name + ": " + c.memory + " in memory, " + c.released + " released, " + c.processing +
      " processing, " + c.queued + " queued, " + c.waiting + " waiting (" + (c.no_worker || 0) +
      " with no worker able to run them), " + c.erred + " erred";
    row.appendChild(bar);
    var count = el("div", "count");
    count.appendChild(el("b", null, fmtInt(c.memory + c.released + c.erred)));
    count.appendChild(document.createTextNode(" / " + fmtInt(total)));
    var extra = [];
    if (c.processing) extra.push(fmtInt(c.processing) + " running");
    if (c.waiting + c.queued) extra.push(fmtInt(c.waiting + c.queued) + " waiting");
    if (c.no_worker) extra.push(fmtInt(c.no_worker) + " no-worker");
    if (c.erred) extra.push(fmtInt(c.erred) + " erred");
    if (extra.length) count.appendChild(document.createTextNode(" · " + extra.join(" · ")));
    row.appendChild(count);
    return row;
  }

  global.Shoal = {
    getJSON: getJSON, poll: poll, fmtBytes: fmtBytes, fmtInt: fmtInt, el: el,
    progressRow: progressRow, POLL_MS: POLL_MS, RETRY_MS: RETRY_MS
  };
})(window);
