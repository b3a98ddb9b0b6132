// baton dashboard: the little script the pages need beside htmx.
// - confirmations in a <dialog> (htmx's hx-confirm, without window.confirm);
// - the page's live region re-read from the server when an event arrives over SSE
//   (at most one read in flight, one more queued: the last state always shows);
// - live logs appended as text (never as HTML) from their own event streams.
(function () {
  "use strict";

  var dialog = null;
  var pendingConfirm = null;
  var refreshAfterDialog = false;

  function dialogOpen() {
    return dialog !== null && dialog.open;
  }

  // ---- confirmations ----
  document.addEventListener("htmx:confirm", function (evt) {
    var question = evt.detail.question;
    if (!question) return;
    evt.preventDefault();
    dialog = document.getElementById("confirm");
    if (!dialog || typeof dialog.showModal !== "function") {
      if (window.confirm(question)) evt.detail.issueRequest(true);
      return;
    }
    document.getElementById("confirm-text").textContent = question;
    var ok = document.getElementById("confirm-ok");
    var label = evt.detail.elt && evt.detail.elt.textContent;
    ok.textContent = label ? label.trim() : "Confirm";
    pendingConfirm = evt.detail;
    dialog.returnValue = "";
    dialog.showModal();
  });

  document.addEventListener("close", function (evt) {
    if (!dialog || evt.target !== dialog) return;
    var detail = pendingConfirm;
    pendingConfirm = null;
    if (dialog.returnValue === "ok" && detail) detail.issueRequest(true);
    if (refreshAfterDialog) {
      refreshAfterDialog = false;
      refresh();
    }
  }, true);

  // ---- the live region ----
  var busy = false;
  var again = false;

  function keepState(region) {
    var kept = { open: [], values: {}, focus: null };
    region.querySelectorAll("details[id][open]").forEach(function (d) { kept.open.push(d.id); });
    region.querySelectorAll("select[id], input[id]").forEach(function (i) { kept.values[i.id] = i.value; });
    var a = document.activeElement;
    if (a && region.contains(a) && a.id) kept.focus = a.id;
    return kept;
  }

  function restoreState(kept) {
    kept.open.forEach(function (id) {
      var d = document.getElementById(id);
      if (d) d.open = true;
    });
    Object.keys(kept.values).forEach(function (id) {
      var i = document.getElementById(id);
      if (i) i.value = kept.values[id];
    });
    if (kept.focus) {
      var f = document.getElementById(kept.focus);
      if (f) f.focus({ preventScroll: true });
    }
  }

  function refresh() {
    if (dialogOpen()) {
      refreshAfterDialog = true;
      return;
    }
    if (busy) {
      again = true;
      return;
    }
    var region = document.querySelector("[data-refresh]");
    if (!region) return;
    busy = true;
    fetch(region.getAttribute("data-refresh"), {
      headers: { "HX-Request": "true" },
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (r) {
      if (r.status === 401) {
        window.location.href = "/ui/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
        return null;
      }
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (html === null || dialogOpen()) {
        if (dialogOpen()) refreshAfterDialog = true;
        return;
      }
      var current = document.querySelector("[data-refresh]");
      if (!current) return;
      var kept = keepState(current);
      htmx.swap(current, html, { swapStyle: "outerHTML" });
      restoreState(kept);
    }).catch(function () { /* the next event tries again */ }).finally(function () {
      busy = false;
      if (again) {
        again = false;
        refresh();
      }
    });
  }

  var listened = new WeakSet();
  document.addEventListener("htmx:sseOpen", function (evt) {
    var source = evt.detail.source;
    var conn = document.getElementById("conn");
    if (conn) conn.hidden = true;
    if (!source || listened.has(source)) return;
    listened.add(source);
    source.addEventListener("change", refresh);
  });

  document.addEventListener("htmx:sseError", function () {
    var conn = document.getElementById("conn");
    if (conn) {
      conn.textContent = "Live updates are interrupted; reconnecting…";
      conn.hidden = false;
    }
  });

  // The event list keeps its newest hundred.
  document.addEventListener("htmx:sseMessage", function (evt) {
    var list = evt.target;
    if (!list || list.id !== "events") return;
    while (list.children.length > 100) list.removeChild(list.lastElementChild);
  });

  // After a button did something, show its effect without waiting for the event.
  document.addEventListener("htmx:afterRequest", function (evt) {
    if (evt.detail.requestConfig && evt.detail.requestConfig.verb === "post") refresh();
  });

  // ---- live logs ----
  var MAX_LINES = 2000;

  function startLogs(pre) {
    var url = pre.getAttribute("data-logs");
    var format = pre.getAttribute("data-format");
    var status = pre.parentNode.querySelector("[data-logs-status]");
    var say = function (text) { if (status) status.textContent = text; };
    var es = new EventSource(url, { withCredentials: true });
    es.onopen = function () { say("streaming"); };
    es.onerror = function () {
      say(es.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…");
    };
    es.addEventListener("end", function () {
      es.close();
      say("finished");
    });
    es.onmessage = function (m) {
      var data;
      try { data = JSON.parse(m.data); } catch (e) { return; }
      var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      var line = document.createElement("span");
      if (format === "container") {
        var who = document.createElement("span");
        who.className = "c";
        who.textContent = data.container + " | ";
        line.appendChild(who);
        if (data.stream === "stderr" || data.stream === "error") line.className = "err";
      }
      line.appendChild(document.createTextNode(data.line + "\n"));
      pre.appendChild(line);
      while (pre.childNodes.length > MAX_LINES) pre.removeChild(pre.firstChild);
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    };
    window.addEventListener("pagehide", function () { es.close(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("pre[data-logs]").forEach(startLogs);
  });
})();
