// Sorting, filtering and copy buttons; no dependencies, no network.
(function () {
  "use strict";
  function cellValue(row, idx, kind) {
    var cell = row.children[idx];
    if (!cell) return "";
    var raw = cell.getAttribute("data-value");
    var text = raw !== null ? raw : cell.textContent.trim();
    if (kind === "num") { var n = parseFloat(text.replace(/,/g, "")); return isNaN(n) ? Infinity : n; }
    return text.toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, idx) {
      var kind = th.getAttribute("data-sort");
      if (!kind) return;
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, idx, kind), y = cellValue(b, idx, kind);
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var text = document.getElementById("run-filter");
  var verdict = document.getElementById("verdict-filter");
  var shown = document.getElementById("shown-count");
  function applyFilter() {
    var q = (text && text.value || "").toLowerCase();
    var v = verdict && verdict.value || "";
    var n = 0, total = 0;
    document.querySelectorAll("#overview-table tbody tr").forEach(function (row) {
      total++;
      var ok = (!v || row.getAttribute("data-verdict") === v) && (!q || row.textContent.toLowerCase().indexOf(q) >= 0);
      row.classList.toggle("hidden", !ok);
      if (ok) n++;
    });
    document.querySelectorAll("details.run").forEach(function (d) {
      var ok = (!v || d.getAttribute("data-verdict") === v) &&
               (!q || d.querySelector("summary").textContent.toLowerCase().indexOf(q) >= 0 ||
                d.textContent.toLowerCase().indexOf(q) >= 0);
      d.classList.toggle("hidden", !ok);
    });
    if (shown) shown.textContent = n === total ? "" : n + " of " + total + " runs shown";
  }
  if (text) text.addEventListener("input", applyFilter);
  if (verdict) verdict.addEventListener("change", applyFilter);
  document.querySelectorAll("#overview-table a").forEach(function (a) {
    a.addEventListener("click", function () {
      var target = document.querySelector(a.getAttribute("href"));
      if (target && target.tagName === "DETAILS") target.open = true;
    });
  });
  document.querySelectorAll("button.copy").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var code = btn.parentNode.querySelector("code").textContent;
      function done() { btn.textContent = "Copied"; btn.classList.add("done");
        setTimeout(function () { btn.textContent = "Copy"; btn.classList.remove("done"); }, 1500); }
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(code).then(done, function () { fallback(code); done(); });
      } else { fallback(code); done(); }
    });
  });
  function fallback(code) {
    var ta = document.createElement("textarea");
    ta.value = code; document.body.appendChild(ta); ta.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing else to try offline */ }
    document.body.removeChild(ta);
  }
})();
