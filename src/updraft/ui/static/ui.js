// Updraft dashboard: live streams (server-sent events), sorting and filtering, confirmed actions.
// No inline script anywhere (the pages' Content-Security-Policy forbids it); each page says what it is in
// <body data-page>, and this file wires what that page needs.
"use strict";
(function () {
  const body = document.body;
  const csrf = body.dataset.csrf || "";
  let offset = Number(body.dataset.now || 0) - Date.now() / 1000; // server clock - browser clock, seconds
  const live = document.getElementById("live");
  window.updraft = { updates: 0, lastUpdateMs: 0, maxUpdateMs: 0 }; // read by the browser tests

  function serverNow() { return Date.now() / 1000 + offset; }
  function setNow(now) { if (now) offset = now - Date.now() / 1000; }

  // -- htmx requests carry the CSRF token too -----------------------------------------------------------
  body.addEventListener("htmx:configRequest", (e) => { e.detail.headers["X-CSRF-Token"] = csrf; });

  // -- flash messages --------------------------------------------------------------------------------------
  const flash = document.getElementById("flash");
  function say(text, tone) {
    if (!flash) return;
    const p = document.createElement("p");
    p.className = "flash tone-" + tone;
    p.textContent = text;
    flash.replaceChildren(p);
  }

  // -- actions: confirm, then POST with the CSRF token -------------------------------------------------------
  const NODE_ACTIONS = {
    cordon: "Cordon node {}? No new task will be placed on it.",
    uncordon: "Uncordon node {}? New tasks may be placed on it again.",
    drain: "Drain node {}? It is cordoned and its running tasks move to other nodes.",
  };
  document.addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-act]");
    if (!button) return;
    e.preventDefault();
    let url = button.dataset.url, question = button.dataset.confirm;
    const row = button.closest(".frow");
    if (!url && row && NODE_ACTIONS[button.dataset.act]) {
      const name = row.id.slice("node-".length);
      url = "/ui/nodes/" + encodeURIComponent(name) + "/" + button.dataset.act;
      question = NODE_ACTIONS[button.dataset.act].replace("{}", name);
    }
    if (!url || !window.confirm(question || "Are you sure?")) return;
    button.disabled = true;
    try {
      const r = await fetch(url, {
        method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf },
      });
      if (r.ok) {
        const tpl = document.createElement("template");
        tpl.innerHTML = await r.text();
        const p = tpl.content.querySelector("p");
        say(p ? p.textContent : "done", "good");
      } else {
        let message = r.status + " " + r.statusText;
        try { const j = await r.json(); message = r.status + ": " + j.message; } catch (_) { /* not JSON */ }
        say(message, "bad");
      }
    } catch (err) {
      say("the server did not answer: " + err, "bad");
    } finally {
      button.disabled = false;
    }
  });

  // -- heartbeat ages, drawn here so a live update need not resend every row each second ---------------------
  function ageText(seconds) {
    if (seconds < 0) seconds = 0;
    if (seconds < 10) return seconds.toFixed(1) + " s";
    if (seconds < 120) return Math.round(seconds) + " s";
    if (seconds < 7200) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }
  function drawAge(el, now) {
    const at = Number(el.closest("[data-hb]").dataset.hb);
    const text = at ? ageText(now - at) : "never";
    if (el.textContent !== text) el.textContent = text;
    el.classList.toggle("late", at > 0 && now - at > 5);
  }

  // -- a live stream -----------------------------------------------------------------------------------------
  function listen(url, handlers) {
    const es = new EventSource(url);
    es.onopen = () => live && live.classList.add("on");
    es.onerror = () => {
      if (live) live.classList.remove("on");
      if (es.readyState === EventSource.CLOSED) say("live updates stopped; reload the page", "warn");
    };
    es.addEventListener("logout", () => { es.close(); window.location.assign("/ui/login"); });
    for (const [name, fn] of Object.entries(handlers)) {
      es.addEventListener(name, (m) => {
        const t0 = performance.now();
        fn(JSON.parse(m.data), es);
        window.updraft.updates += 1;
        const ms = performance.now() - t0;
        window.updraft.lastUpdateMs = ms;
        if (ms > window.updraft.maxUpdateMs) window.updraft.maxUpdateMs = ms;
      });
    }
    window.addEventListener("pagehide", () => es.close());
    return es;
  }

  function fromHtml(html) {
    const tpl = document.createElement("template");
    tpl.innerHTML = html;
    return tpl.content.firstElementChild;
  }

  // -- fleet ---------------------------------------------------------------------------------------------------
  function fleet() {
    const table = document.getElementById("fleet");
    const tbody = document.getElementById("fleet-rows");
    const filterBox = document.getElementById("fleet-filter");
    const stateBox = document.getElementById("fleet-state");
    const count = document.getElementById("fleet-count");
    let sortKey = "name", sortNum = false, sortDir = 1;

    function matches(tr) {
      const hay = " " + (tr.dataset.search || "") + " ";
      const state = stateBox.value;
      if (state && !hay.includes(" " + state + " ")) return false;
      for (const term of filterBox.value.toLowerCase().split(/\s+/)) {
        if (term && !hay.includes(term)) return false;
      }
      return true;
    }
    function filterRow(tr) { tr.hidden = !matches(tr); }
    function countShown() {
      const all = tbody.children.length;
      let shown = 0;
      for (const tr of tbody.children) if (!tr.hidden) shown += 1;
      count.textContent = shown === all ? all + " nodes" : shown + " of " + all + " nodes";
    }
    function filterAll() { for (const tr of tbody.children) filterRow(tr); countShown(); }
    function key(tr) {
      return sortKey === "name" ? tr.id : sortNum ? Number(tr.dataset[sortKey]) : tr.dataset[sortKey] || "";
    }
    function compare(a, b) {
      const x = key(a), y = key(b);
      if (x < y) return -sortDir;
      if (x > y) return sortDir;
      return a.id < b.id ? -1 : 1;
    }
    function sortRows() {
      const rows = Array.from(tbody.children).sort(compare);
      const frag = document.createDocumentFragment();
      for (const tr of rows) frag.appendChild(tr);
      tbody.appendChild(frag);
    }
    // Rows whose sort key changed go back to their place one by one (binary search among the others, which
    // are still in order): a live update moves tens of rows, not all 1,000.
    function placeRows(moved) {
      if (!moved.length) return;
      if (moved.length > tbody.children.length / 4) { sortRows(); return; }
      for (const tr of moved) tr.remove();
      const rows = Array.from(tbody.children);
      for (const tr of moved) {
        let lo = 0, hi = rows.length;
        while (lo < hi) { const mid = (lo + hi) >> 1; if (compare(rows[mid], tr) <= 0) lo = mid + 1; else hi = mid; }
        tbody.insertBefore(tr, rows[lo] || null);
        rows.splice(lo, 0, tr);
      }
    }
    table.querySelector(".fhead").addEventListener("click", (e) => {
      const th = e.target.closest("[data-sort]");
      if (!th) return;
      const key = th.dataset.sort;
      sortDir = key === sortKey ? -sortDir : 1;
      sortKey = key;
      sortNum = Boolean(th.dataset.num);
      for (const h of table.querySelectorAll("[data-sort]")) h.classList.remove("sorted-asc", "sorted-desc");
      th.classList.add(sortDir > 0 ? "sorted-asc" : "sorted-desc");
      sortRows();
    });
    filterBox.addEventListener("input", filterAll);
    stateBox.addEventListener("change", filterAll);
    if (filterBox.value || stateBox.value) filterAll(); else countShown(); // a reload may keep the boxes' values
    // Ages are redrawn each second for the rows on screen only (an IntersectionObserver keeps the set): the
    // server drew them once, and a row scrolled into view is drawn as it appears.
    const onScreen = new Set();
    const seen = new IntersectionObserver((entries) => {
      const now = serverNow();
      for (const e of entries) {
        if (e.isIntersecting) { onScreen.add(e.target); drawAge(e.target.querySelector(".age"), now); }
        else onScreen.delete(e.target);
      }
    });
    for (const tr of tbody.children) seen.observe(tr);
    function forget(tr) { seen.unobserve(tr); onScreen.delete(tr); }
    setInterval(() => {
      const now = serverNow();
      for (const tr of onScreen) drawAge(tr.querySelector(".age"), now);
    }, 1000);

    listen("/ui/live/fleet?view=" + encodeURIComponent(table.dataset.view), {
      rows(data) {
        setNow(data.now);
        const moved = [];
        if (data.rows) {
          const fresh = document.createElement("template"); // one parse for the whole batch
          fresh.innerHTML = Object.values(data.rows).join("");
          const filtering = Boolean(filterBox.value || stateBox.value);
          for (const tr of Array.from(fresh.content.children)) {
            const old = document.getElementById(tr.id);
            if (old) {
              const sameKey = key(old) === key(tr);
              forget(old);
              old.replaceWith(tr);
              if (!sameKey) moved.push(tr);
            } else {
              tbody.appendChild(tr);
              moved.push(tr);
            }
            seen.observe(tr);
            if (filtering) filterRow(tr);
          }
          for (const id of data.gone) {
            const old = document.getElementById(id);
            if (old) { forget(old); old.remove(); }
          }
          const summary = document.getElementById("fleet-summary");
          if (summary && data.summary) summary.innerHTML = data.summary;
        }
        const now = serverNow();
        for (const [id, at] of Object.entries(data.hb)) {
          const tr = document.getElementById(id);
          if (!tr) continue;
          tr.dataset.hb = at;
          if (onScreen.has(tr)) drawAge(tr.querySelector(".age"), now);
          if (sortKey === "hb" && !moved.includes(tr)) moved.push(tr);
        }
        placeRows(moved);
        if (data.rows) countShown();
      },
    });
  }

  // -- events --------------------------------------------------------------------------------------------------
  function events() {
    const table = document.getElementById("events");
    const tbody = document.getElementById("event-rows");
    const filterBox = document.getElementById("events-filter");
    const keep = 500;
    function filterRow(tr) {
      const terms = filterBox.value.toLowerCase().split(/\s+/).filter(Boolean);
      const hay = tr.textContent.toLowerCase();
      tr.hidden = !terms.every((t) => hay.includes(t));
    }
    filterBox.addEventListener("input", () => { for (const tr of tbody.rows) filterRow(tr); });
    listen("/ui/live/event-feed?after=" + encodeURIComponent(table.dataset.last || "0"), {
      events(data) {
        const frag = document.createDocumentFragment();
        for (const html of data.rows) { const tr = fromHtml(html); filterRow(tr); frag.appendChild(tr); }
        tbody.insertBefore(frag, tbody.firstChild);
        while (tbody.rows.length > keep) tbody.deleteRow(-1);
      },
    });
  }

  // -- one task ------------------------------------------------------------------------------------------------
  function task() {
    const box = document.getElementById("task-live");
    const timeline = document.getElementById("timeline");
    const logs = document.getElementById("logs");
    if (box.dataset.terminal) return; // finished: nothing more will come
    const url = "/ui/live/task/" + encodeURIComponent(box.dataset.task) +
      "?events_after=" + encodeURIComponent(box.dataset.eventsAfter) +
      "&logs_after=" + encodeURIComponent(box.dataset.logsAfter);
    listen(url, {
      task(data) {
        const old = document.getElementById("task-state");
        if (old) old.replaceWith(fromHtml(data.html));
      },
      events(data) {
        for (const html of data.rows) timeline.appendChild(fromHtml(html));
      },
      logs(data) {
        const atEnd = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
        const frag = document.createDocumentFragment();
        for (const line of data.lines) {
          const span = document.createElement("span");
          span.className = "s-" + line.stream;
          span.textContent = line.data;
          frag.appendChild(span);
        }
        logs.appendChild(frag);
        if (atEnd) logs.scrollTop = logs.scrollHeight;
      },
      done(_data, es) {
        es.close();
        if (live) live.classList.remove("on");
        box.dataset.terminal = "1";
      },
    });
  }

  // -- pages that re-read themselves when something is committed (tasks, flows) ----------------------------------
  function refreshing() {
    const el = document.querySelector("[data-refresh]");
    if (!el || !window.htmx) return;
    let busy = false;
    listen("/ui/live/pulse", {
      pulse(data) {
        setNow(data.now);
        if (busy) return;
        busy = true;
        const sel = "#" + el.id;
        window.htmx.ajax("GET", window.location.pathname + window.location.search,
          { target: sel, select: sel, swap: "outerHTML" }).finally(() => { busy = false; });
      },
    });
  }

  const page = body.dataset.page;
  document.addEventListener("DOMContentLoaded", () => {
    if (page === "fleet" && document.getElementById("fleet")) fleet();
    else if (page === "events") events();
    else if (page === "tasks" && document.getElementById("task-live")) task();
    else if (page === "tasks" || page === "flows") refreshing();
    window.updraft.ready = performance.now();
  });
})();
