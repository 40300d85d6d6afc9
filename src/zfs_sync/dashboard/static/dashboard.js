// zfs-sync dashboard: live updates (SSE, falling back to polling), table sort and search.
// The server renders every page; on a change we fetch the same page once and swap <main>,
// so a page never makes a request per system or per group.
(function () {
  "use strict";
  var POLL_MS = window.zfsSyncPollMs || 15000, DEBOUNCE_MS = 250;
  var timer = null, poller = null;

  function busy() {
    var el = document.activeElement;
    if (el && el.closest && el.closest("main form") && /INPUT|TEXTAREA|SELECT/.test(el.tagName)) {
      return true;
    }
    return document.querySelector("main form[data-dirty]") !== null;
  }

  function refresh() {
    if (busy()) { return; }
    fetch(window.location.href, {headers: {"Accept": "text/html"}, credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html || busy()) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live"), main = document.getElementById("live");
        var mark = doc.body && doc.body.dataset.lastEvent;
        if (mark) { document.body.dataset.lastEvent = mark; }
        if (fresh && main) {
          var query = (document.querySelector("[data-filter]") || {}).value || "";
          var sort = main.querySelector("table.sortable") ? currentSort : null;
          main.innerHTML = fresh.innerHTML;
          setup(main);
          if (query) { var f = document.querySelector("[data-filter]"); f.value = query; filter(f); }
          if (sort) { sortBy(sort.table, sort.col, sort.num, sort.dir); }
          document.body.dataset.refreshed = String(Date.now());
        }
      })
      .catch(function () {});
  }

  function soon() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(refresh, DEBOUNCE_MS);
  }

  function state(text) {
    var el = document.getElementById("live-state");
    if (el) { el.textContent = text; el.dataset.state = text; }
  }

  function poll() {
    if (!poller) { poller = setInterval(refresh, POLL_MS); state("polling"); }
  }

  function live() {
    if (!window.EventSource) { poll(); return; }
    // Start after the newest event the page was rendered with, so nothing is missed between
    // rendering and connecting; reconnects resume from Last-Event-ID.
    var after = parseInt(document.body.dataset.lastEvent || "0", 10) || 0;
    var source = new EventSource("/api/v1/events/stream?after_id=" + after);
    var failures = 0;
    source.onopen = function () {
      failures = 0; state("live");
      if (poller) { clearInterval(poller); poller = null; }
    };
    source.onmessage = soon;
    source.onerror = function () {
      failures += 1;
      if (failures >= 3) { source.close(); poll(); }
    };
    // Named events (system.online, sync.completed, ...) do not reach onmessage.
    var origAdd = source.addEventListener.bind(source);
    ["system.online", "system.offline", "system.registered", "system.replaced",
     "system.updated", "system.deleted", "system.key_rotated", "system.key_revoked",
     "sync.in_sync", "sync.out_of_sync", "sync.syncing", "sync.error", "sync.conflict",
     "sync.late", "sync.late_cleared", "group.created", "group.updated", "group.deleted",
     "group.disabled", "group.member_added", "group.member_removed", "conflict.detected",
     "conflict.resolved", "conflict.cleared", "conflict.reopened"
    ].forEach(function (name) { origAdd(name, soon); });
    window.addEventListener("beforeunload", function () { source.close(); });
  }

  var currentSort = null;

  function cellValue(row, col, num) {
    var cell = row.cells[col];
    var raw = cell ? (cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent) : "";
    return num ? parseFloat(raw) || 0 : raw.trim().toLowerCase();
  }

  function sortBy(table, col, num, dir) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, col, num), y = cellValue(b, col, num);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.querySelectorAll("th"), function (th, i) {
      th.setAttribute("aria-sort", i === col ? (dir > 0 ? "ascending" : "descending") : "none");
    });
    currentSort = {table: table, col: col, num: num, dir: dir};
  }

  function filter(input) {
    var table = document.getElementById(input.dataset.filter);
    if (!table) { return; }
    var q = input.value.trim().toLowerCase();
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      row.hidden = q !== "" && row.textContent.toLowerCase().indexOf(q) < 0;
    });
  }

  function setup(root) {
    Array.prototype.forEach.call(root.querySelectorAll("table.sortable"), function (table) {
      Array.prototype.forEach.call(table.querySelectorAll("button[data-sort]"), function (btn) {
        btn.addEventListener("click", function () {
          var col = parseInt(btn.dataset.sort, 10), num = btn.dataset.type === "num";
          var dir = currentSort && currentSort.table === table && currentSort.col === col ? -currentSort.dir : 1;
          sortBy(table, col, num, dir);
        });
      });
    });
    Array.prototype.forEach.call(root.querySelectorAll("[data-filter]"), function (input) {
      input.addEventListener("input", function () { filter(input); });
    });
    Array.prototype.forEach.call(root.querySelectorAll("form"), function (form) {
      form.addEventListener("input", function () { form.dataset.dirty = "1"; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setup(document);
    live();
  });
}());
