// faultline dashboard: times in the browser's zone, and live updates of the
// overview over Server-Sent Events. Every page works without this file.
(function () {
  "use strict";
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        t.title = t.getAttribute("datetime");
        t.textContent = d.toLocaleString();
      }
    });
  }
  localTimes(document);

  var live = document.body.getAttribute("data-live");
  if (!live || !window.EventSource) return;
  var table = document.getElementById("devices");
  var filtered = table && table.getAttribute("data-filtered") === "1";

  function set(id, text) {
    var el = document.getElementById(id);
    if (el) el.textContent = text;
  }
  function cell(tr, i) {
    while (tr.cells.length <= i) tr.insertCell(-1);
    return tr.cells[i];
  }
  function stateOf(d) {
    if (d.open_alert) return "critical";
    if (d.fault_probability !== null && d.fault_probability >= 0.5) return "warning";
    return "ok";
  }
  function upsert(d) {
    if (!table) return;
    var body = table.tBodies[0];
    var tr = null;
    for (var i = 0; i < body.rows.length; i++) {
      if (body.rows[i].getAttribute("data-device") === d.device_id) { tr = body.rows[i]; break; }
    }
    if (!tr) {
      if (filtered) return;
      tr = body.insertRow(-1);
      tr.setAttribute("data-device", d.device_id);
      var a = document.createElement("a");
      a.href = "/devices/" + encodeURIComponent(d.device_id);
      a.textContent = d.device_id;
      cell(tr, 0).appendChild(a);
      set("device-count", String(body.rows.length));
      var empty = document.getElementById("no-devices");
      if (empty) empty.hidden = true;
    }
    tr.className = stateOf(d);
    var p = cell(tr, 1);
    p.className = "num";
    p.textContent = d.fault_probability === null ? "–" : d.fault_probability.toFixed(3);
    var t = document.createElement("time");
    t.setAttribute("datetime", d.last_window_end);
    t.textContent = d.last_window_end;
    var c = cell(tr, 2);
    c.textContent = "";
    c.appendChild(t);
    var u = document.createElement("time");
    u.setAttribute("datetime", d.updated_at);
    var c3 = cell(tr, 3);
    c3.textContent = "";
    c3.appendChild(u);
    cell(tr, 4).textContent = d.open_alert || "";
    localTimes(tr);
  }

  var es = new EventSource("/events");
  // A page left open in the back-forward cache would keep its stream, and
  // a browser opens at most six connections to one host: close it on leaving.
  window.addEventListener("pagehide", function () { es.close(); });
  es.addEventListener("device", function (e) { upsert(JSON.parse(e.data)); });
  es.addEventListener("counts", function (e) {
    var c = JSON.parse(e.data);
    set("open", String(c.open));
    set("acknowledged", String(c.acknowledged));
  });
  es.addEventListener("rate", function (e) {
    set("rate", JSON.parse(e.data).readings_per_s.toFixed(1));
  });
  es.addEventListener("alert", function (e) {
    var a = JSON.parse(e.data);
    var note = document.getElementById("live-note");
    if (note && live !== "overview" && (live === "alerts" || note.getAttribute("data-device") === a.device_id)) {
      note.hidden = false;
    }
  });
})();
