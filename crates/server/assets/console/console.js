// Switchyard console: charts (uPlot), copy buttons, confirmations and the
// live task log (Server-Sent Events). Loaded as a file: the CSP allows no
// inline script.
(function () {
  "use strict";

  function day(s) { return Date.parse(s + "T00:00:00Z") / 1000; }

  var palette = ["#2456c9", "#c9472b", "#1a7f37", "#9a6700", "#8250df"];

  function drawChart(el) {
    if (el.dataset.drawn || typeof uPlot === "undefined") { return; }
    var spec;
    try { spec = JSON.parse(el.dataset.chart); } catch (e) { return; }
    el.dataset.drawn = "1";
    var data = [spec.days.map(day)];
    var series = [{}];
    spec.series.forEach(function (s, i) {
      data.push(s.values);
      series.push({ label: s.name, stroke: palette[i % palette.length], width: 2,
                    scale: i === 0 ? "y" : "y" + i, points: { show: true } });
    });
    var axes = [{}];
    spec.series.forEach(function (s, i) {
      axes.push({ scale: i === 0 ? "y" : "y" + i, side: i === 0 ? 3 : 1, label: s.name,
                  grid: { show: i === 0 } });
    });
    var width = Math.max(280, el.clientWidth - 16);
    var plot = new uPlot({ width: width, height: 220, series: series, axes: axes,
                           scales: { x: { time: true } } }, data, el);
    el.dataset.points = String(spec.days.length);
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(280, el.clientWidth - 16), height: 220 });
    });
  }

  function copyButtons(root) {
    root.querySelectorAll("[data-copy]").forEach(function (btn) {
      if (btn.dataset.bound) { return; }
      btn.dataset.bound = "1";
      btn.addEventListener("click", function () {
        var target = document.getElementById(btn.dataset.copy);
        if (!target) { return; }
        var text = target.textContent;
        var done = function () { btn.textContent = "Copied"; };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { select(target); });
        } else {
          select(target);
          try { document.execCommand("copy"); done(); } catch (e) { /* selected for the user */ }
        }
      });
    });
  }

  function select(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  function confirmations(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.bound) { return; }
      form.dataset.bound = "1";
      form.addEventListener("submit", function (ev) {
        if (!window.confirm(form.dataset.confirm)) { ev.preventDefault(); }
      });
    });
  }

  function liveLog(root) {
    root.querySelectorAll("[data-sse]").forEach(function (list) {
      if (list.dataset.bound) { return; }
      list.dataset.bound = "1";
      var status = document.getElementById(list.dataset.status);
      var source = new EventSource(list.dataset.sse);
      list.dataset.state = "open";
      source.addEventListener("log", function (ev) {
        var li = document.createElement("li");
        var entry;
        try { entry = JSON.parse(ev.data); } catch (e) { entry = null; }
        li.textContent = entry ? describe(entry) : ev.data;
        li.dataset.kind = entry && entry.kind ? entry.kind : "";
        list.appendChild(li);
        list.scrollTop = list.scrollHeight;
        list.dataset.entries = String(list.children.length);
      });
      source.addEventListener("done", function (ev) {
        var s = "";
        try { s = JSON.parse(ev.data).status; } catch (e) { s = ""; }
        if (status) { status.textContent = s || "ended"; }
        list.dataset.state = "done";
        source.close();
      });
      source.onerror = function () {
        if (list.dataset.state !== "done") { list.dataset.state = "retrying"; }
      };
    });
  }

  function describe(e) {
    var parts = [e.timestamp ? e.timestamp.slice(11, 19) : "", e.kind || "event"];
    if (e.tool) { parts.push(e.tool); }
    if (e.summary) { parts.push(e.summary); }
    if (e.duration_ms !== undefined) { parts.push(e.duration_ms + " ms"); }
    return parts.filter(Boolean).join(" · ");
  }

  function init(root) {
    root.querySelectorAll(".chart[data-chart]").forEach(drawChart);
    copyButtons(root);
    confirmations(root);
    liveLog(root);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (ev) { init(ev.target || document); });
})();
