/* Lessons learned: the small amount of browser code the pages need.
   No inline scripts anywhere (strict CSP); everything is wired here. */
(function () {
  "use strict";
  var lastSeq = null;

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : "";
  }
  function announce(text) {
    var a = document.getElementById("announcer");
    if (a) { a.textContent = ""; setTimeout(function () { a.textContent = text; }, 30); }
  }
  function setConn(state, label) {
    document.querySelectorAll("[data-conn]").forEach(function (el) {
      el.dataset.state = state;
      el.textContent = label;
    });
  }
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return String(Date.now()) + Math.random().toString(16).slice(2);
  }

  document.addEventListener("htmx:configRequest", function (e) {
    e.detail.headers["X-CSRF-Token"] = csrf();
  });

  /* Errors: show the server's message next to the form that caused it;
     nothing the person typed is lost because nothing is swapped. */
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr, msg = "Something went wrong (" + xhr.status + ").";
    try { msg = JSON.parse(xhr.responseText).error.message || msg; } catch (err) { /* keep */ }
    var elt = e.detail.elt, form = elt.closest ? elt.closest("form") : null;
    var slot = (form && form.querySelector(".form-errors")) ||
      (elt.closest && elt.closest(".fa") && elt.closest(".fa").querySelector(".form-errors")) ||
      document.getElementById("console-msg");
    if (slot) { slot.textContent = msg; slot.classList.add("alert"); }
    announce(msg);
  });
  document.addEventListener("htmx:sendError", function () {
    announce("The server cannot be reached. Your text is kept; try again in a moment.");
  });

  /* Card forms: a client id per submission makes retries idempotent. */
  document.addEventListener("htmx:configRequest", function (e) {
    var form = e.detail.elt;
    if (form.matches && form.matches("form.card-form")) {
      var input = form.querySelector("[data-client-id]");
      if (input && !input.value) input.value = uuid();
      e.detail.parameters.client_id = input ? input.value : "";
    }
  });
  /* Forms marked data-reset-on-success empty themselves once the server
     has taken what they sent (the card form, "New cluster"). */
  document.addEventListener("htmx:afterRequest", function (e) {
    var form = e.detail.elt;
    if (!(form.matches && form.matches("form[data-reset-on-success]")) || !e.detail.successful) return;
    form.reset();
    var errs = form.querySelector(".form-errors");
    if (errs) { errs.textContent = ""; errs.classList.remove("alert"); }
    if (!form.matches("form.card-form")) return;
    var input = form.querySelector("[data-client-id]");
    if (input) input.value = "";
    var sim = form.querySelector(".similar");
    if (sim) sim.innerHTML = "";
    announce("Card added.");
    var title = form.querySelector("input[name=title]");
    if (title) title.focus();
  });

  /* A push replaces whole fragments. Keep what the person was doing in
     them: the focused control (keyboard users would otherwise be thrown
     back to the top of the page), open "Edit cluster" panels, and text
     typed but not yet saved. Elements are found again by id, or by their
     position inside the nearest ancestor that has an id. */
  var CONTROLS = "a[href], button, input, select, textarea, summary, [tabindex]";
  function keyOf(el, selector) {
    if (el.id) return { id: el.id };
    var holder = el.parentElement && el.parentElement.closest("[id]");
    if (!holder) return null;
    var i = Array.prototype.indexOf.call(holder.querySelectorAll(selector), el);
    return i < 0 ? null : { holder: holder.id, index: i, selector: selector };
  }
  function find(key) {
    if (!key) return null;
    if (key.id) return document.getElementById(key.id);
    var holder = document.getElementById(key.holder);
    return holder ? holder.querySelectorAll(key.selector)[key.index] || null : null;
  }
  var kept = null;
  document.addEventListener("htmx:wsBeforeMessage", function () {
    var active = document.activeElement, root = document.querySelector(".live-root");
    if (!root) return;
    kept = { focus: active && active !== document.body ? keyOf(active, CONTROLS) : null, open: [], values: [] };
    root.querySelectorAll("details[open]").forEach(function (d) { kept.open.push(keyOf(d, "details")); });
    root.querySelectorAll("input[id], textarea[id], select[id]").forEach(function (f) {
      if (f.type === "hidden" || f.type === "checkbox" || f.type === "radio") return;
      if (f.matches("[data-phase-select]")) return;  // see htmx:oobBeforeSwap below
      var dirty = f.tagName === "SELECT"
        ? Array.prototype.some.call(f.options, function (o) { return o.selected !== o.defaultSelected; })
        : f.value !== f.defaultValue;
      if (dirty) kept.values.push([f.id, f.value]);
    });
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    var k = kept;
    kept = null;
    if (!k) return;
    k.open.forEach(function (key) { var d = find(key); if (d) d.open = true; });
    k.values.forEach(function (pair) {
      var f = document.getElementById(pair[0]);
      if (f && f.value !== pair[1]) f.value = pair[1];
    });
    var active = document.activeElement;
    if (k.focus && (!active || active === document.body || !document.contains(active))) {
      var el = find(k.focus);
      if (el && el.focus) el.focus({ preventScroll: true });
    }
  });

  /* Console controls ride on the facilitator's push so that every console
     shows the current state, whoever changed it: the phase menus and the
     workshop switches. Replacing them on every push would close a menu under
     a facilitator who has it open while cards pour in, so an element with
     data-swap-key is swapped only when that key (its state) has changed; and
     then the new state wins over a pick not yet sent, which was made against
     the old one (so that pick is not kept above). */
  document.addEventListener("htmx:oobBeforeSwap", function (e) {
    var target = e.detail.target, fragment = e.detail.fragment;
    var incoming = fragment && fragment.firstElementChild;
    if (!incoming || !target.hasAttribute || !target.hasAttribute("data-swap-key")) return;
    if (incoming.getAttribute("data-swap-key") === target.getAttribute("data-swap-key") &&
        incoming.getAttribute("hx-put") === target.getAttribute("hx-put")) {
      e.detail.shouldSwap = false;
    }
  });

  /* Reconnecting. The ws extension retries by itself only after close codes
     1006, 1011, 1012 and 1013, with delays growing to a minute. A server
     that shuts down cleanly says 1001 and a revoked link 4401 (whose other
     sockets may reconnect at once), so after any other close the socket is
     opened again here (the extension re-creates it when the ws-connect
     element changes); delays stay short, with jitter so a room of laptops
     does not knock all at once. */
  if (window.htmx) {
    htmx.config.wsReconnectDelay = function (retryCount) {
      return Math.min(500 * Math.pow(2, retryCount), 5000) * (0.5 + Math.random() / 2);
    };
  }
  var SELF_RETRYING = [1006, 1011, 1012, 1013];
  function reconnectAfter(elt, code) {
    if (!elt || !elt.hasAttribute || !elt.hasAttribute("ws-connect")) return;
    if (SELF_RETRYING.indexOf(code) >= 0) return;
    setTimeout(function () {
      if (!elt.isConnected) return;
      elt.setAttribute("data-reconnects", String(Number(elt.getAttribute("data-reconnects") || 0) + 1));
      htmx.process(elt);
    }, 250 + Math.random() * 750);
  }

  /* Live connection: say hello with the last seq after every (re)connect. */
  document.addEventListener("htmx:wsOpen", function (e) {
    setConn("up", "Live");
    e.detail.socketWrapper.send(JSON.stringify({ type: "hello", seq: lastSeq }));
  });
  document.addEventListener("htmx:wsClose", function (e) {
    setConn("down", "Reconnecting…");
    reconnectAfter(e.target, e.detail.event ? e.detail.event.code : 0);
  });
  document.addEventListener("htmx:wsError", function () { setConn("down", "Reconnecting…"); });
  document.addEventListener("htmx:wsAfterMessage", function () {
    var st = document.getElementById("ws-status") || document.getElementById("projector");
    if (st && st.dataset.seq) lastSeq = parseInt(st.dataset.seq, 10);
    tick();
    initSortables();
  });

  /* Phase changes are announced to screen readers. A participant's own
     panel (dots left, my cards) is personal, so it never rides on the shared
     push: when the phase moves, the participant's browser asks for its own. */
  var lastPhases = {};
  function watchPhases() {
    var root = document.querySelector(".live-root[data-code]");
    document.querySelectorAll(".fa-head").forEach(function (h) {
      var title = h.querySelector("h2"), prev = lastPhases[h.id];
      var label = h.querySelector(".phase");
      if (prev && prev !== h.dataset.phase && title && label) {
        announce(title.textContent + ": " + label.textContent);
      }
      lastPhases[h.id] = h.dataset.phase;
      var faId = h.id.replace("fa-head-", ""), mine = document.getElementById("mine-" + faId);
      var dots = document.getElementById("my-" + faId);
      if (root && mine && dots && dots.dataset.phase !== h.dataset.phase && !mine.dataset.loading) {
        mine.dataset.loading = "1";
        htmx.ajax("GET", "/w/" + root.dataset.code + "/mine/" + faId,
          { target: mine, swap: "outerHTML" });
      }
    });
  }
  document.addEventListener("htmx:wsAfterMessage", watchPhases);

  /* Countdown timers: ends-at comes from the server, in UTC. */
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-ends-at]").forEach(function (el) {
      var end = Date.parse(el.dataset.endsAt);
      if (isNaN(end)) return;
      var left = Math.max(0, Math.round((end - now) / 1000));
      var text = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
      if (el.textContent !== text) el.textContent = text;
      if (left === 0 && !el.dataset.done) { el.dataset.done = "1"; el.classList.add("ended"); announce("Time is up."); }
    });
  }
  setInterval(tick, 1000);

  /* Drag and drop for the facilitator (SortableJS); the same moves exist as
     "Move to" menus for keyboard and screen-reader users. */
  function initSortables() {
    if (!window.Sortable) return;
    var root = document.querySelector("[data-code]");
    if (!root) return;
    document.querySelectorAll(".card-list.sortable").forEach(function (list) {
      if (list.dataset.sortable) return;
      list.dataset.sortable = "1";
      window.Sortable.create(list, {
        group: "cards-" + list.dataset.fa,
        draggable: ".card",
        animation: 120,
        onEnd: function (evt) {
          if (evt.from === evt.to) return;
          var cardId = evt.item.dataset.cardId;
          htmx.ajax("POST", "/w/" + root.dataset.code + "/cards/" + cardId + "/move", {
            values: { cluster_id: evt.to.dataset.clusterId || "" }, swap: "none", source: evt.item
          });
        }
      });
    });
  }

  /* Keyboard shortcuts on the console (listed on the page). */
  var currentFa = null;
  document.addEventListener("keydown", function (e) {
    var console_ = document.querySelector(".page-console");
    if (!console_ || e.ctrlKey || e.metaKey || e.altKey) return;
    var tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select") return;
    var areas = document.querySelectorAll(".console-areas > .fa");
    if (/^[1-9]$/.test(e.key)) {
      var a = areas[parseInt(e.key, 10) - 1];
      if (a) { currentFa = a; a.focus(); a.scrollIntoView({ block: "start" }); }
      return;
    }
    var fa = currentFa || areas[0];
    if (!fa) return;
    var sel = fa.querySelector("[data-phase-select]");
    if ((e.key === "n" || e.key === "p") && sel) {
      var i = sel.selectedIndex + (e.key === "n" ? 1 : -1);
      if (i >= 0 && i < sel.options.length) { sel.selectedIndex = i; htmx.trigger(sel.form, "submit"); }
    } else if (e.key === "s") { click(fa, "[data-spotlight]"); }
    else if (e.key === "t") { click(fa, "[data-timer]"); }
    else if (e.key === "r") { click(fa, "[data-reveal]"); }
  });
  function click(scope, selector) { var b = scope.querySelector(selector); if (b) b.click(); }

  /* "+ New cluster" in a move menu submits at once. */
  document.addEventListener("change", function (e) {
    if (e.target.matches && e.target.matches("[data-move-select]") && e.target.value === "new") {
      htmx.trigger(e.target.form, "submit");
    }
  });

  /* Exports: a progress note while the file is prepared. */
  document.addEventListener("click", function (e) {
    var a = e.target.closest ? e.target.closest("a[data-export]") : null;
    if (!a) return;
    e.preventDefault();
    var note = document.querySelector("[data-export-progress]");
    if (note) { note.hidden = false; note.textContent = "Preparing " + a.textContent + "…"; }
    fetch(a.href, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error("The export failed (" + r.status + ").");
      var name = (r.headers.get("Content-Disposition") || "").split('filename="')[1];
      return r.blob().then(function (b) { return [b, name ? name.replace('"', "") : "export"]; });
    }).then(function (res) {
      var url = URL.createObjectURL(res[0]), link = document.createElement("a");
      link.href = url; link.download = res[1]; document.body.appendChild(link); link.click();
      setTimeout(function () { URL.revokeObjectURL(url); link.remove(); }, 1000);
      if (note) note.textContent = "Downloaded " + res[1] + ".";
    }).catch(function (err) { if (note) note.textContent = err.message; });
  });

  /* Suggestions: discarding or accepting clears the proposal box. */
  document.addEventListener("click", function (e) {
    var b = e.target.closest ? e.target.closest("[data-discard]") : null;
    if (!b) return;
    var box = b.closest(".suggestions");
    if (box) { box.innerHTML = ""; announce("Suggestions discarded."); }
  });
  document.addEventListener("suggestions-done", function (e) {
    var box = e.target.closest ? e.target.closest(".suggestions") : null;
    if (box) box.innerHTML = "";
    announce("Cluster created from the suggestion.");
  });

  document.addEventListener("DOMContentLoaded", function () {
    tick(); initSortables(); watchPhases();
    if (!document.querySelector("[ws-connect]")) return;
    setConn("connecting", "Connecting…");
  });
})();
