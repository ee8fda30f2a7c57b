/* PatchRings operator page: vanilla JS over the app's JSON routes (/api/ui/api/...).
 *
 * No framework and no build step. Every value from the API is put in the page with textContent
 * (never innerHTML), so data cannot inject markup; the Content-Security-Policy allows this one
 * script only. The page refreshes every few seconds; sections are redrawn only when their data
 * changed, so focus, typed comments and the filter box survive a refresh.
 */
(function () {
  "use strict";

  var BASE = (document.querySelector('meta[name="patchrings-base"]') || {}).content || "/api/ui";
  var REFRESH_MS = 3000;
  var LOCAL_KEY = "patchrings.as";
  // gen: the current view's generation; a replaced view's pending refresh stops instead of polling on.
  var state = { me: null, meError: null, view: null, rolloutId: null, timer: null, busy: false, gen: 0 };

  // ------------------------------------------------------------------ DOM helpers
  // Links and sources only ever point at this app: a value that is not a local path (another
  // host, "//host", "/\\host", "javascript:", "data:") becomes "#", whatever the data said.
  var URL_ATTRS = { href: true, src: true, action: true, formaction: true, xlink_href: true };
  function localHref(v) {
    var s = String(v);
    if (s.charAt(0) !== "/" || s.charAt(1) === "/" || s.charAt(1) === "\\" || /[\u0000-\u001f\u007f]/.test(s)) return "#";
    return s;
  }
  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "class") el.className = v;
        else if (k === "text") el.textContent = String(v);
        else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
        else if (URL_ATTRS[k]) el.setAttribute(k, localHref(v));
        else el.setAttribute(k, v === true ? "" : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }
  function append(el, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(el, c); }); return; }
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
  function arr(v) { return Array.isArray(v) ? v : []; }
  function obj(v) { return v && typeof v === "object" && !Array.isArray(v) ? v : {}; }
  function str(v) { return v === null || v === undefined ? "" : String(v); }
  function time(v) { return v ? h("time", { datetime: str(v), text: str(v) }) : h("span", { class: "muted", text: "-" }); }
  function shortName(id) { var s = str(id).replace(/\/+$/, ""); return s.slice(s.lastIndexOf("/") + 1) || s; }
  function shortHash(v) { return str(v); }

  // Redraw a section only when the data it shows changed (keeps focus and input state).
  function renderIf(section, key, draw) {
    var k = JSON.stringify(key === undefined ? null : key);
    if (section.dataset.key === k) return;
    section.dataset.key = k;
    clear(section);
    draw(section);
  }

  var TONES = {
    ok: ["released", "passed", "pass", "promoted", "completed", "succeeded", "healthy", "ok", "done", "approved", "accepted", "assessed"],
    bad: ["quarantined", "failed", "fail", "rejected", "halted", "terminated", "unhealthy", "error", "refused", "coverage-refused", "cancelled", "canceled"],
    warn: ["awaiting-approval", "waiting", "inconclusive", "pending-approval", "warning", "unreadable", "missing", "timeout"],
    info: ["installing", "running", "waiting-for-run", "gating-run", "run-authorised", "collecting-and-verifying",
      "promoting", "polling", "verifying", "collecting", "stay-healthy", "submitted", "in-progress"]
  };
  var PHASES = {
    "pending": "not started",
    "installing": "installing",
    "waiting-for-run": "waiting for its maintenance run",
    "gating-run": "checking its maintenance run",
    "run-authorised": "run authorised",
    "collecting-and-verifying": "collecting results and verifying health",
    "awaiting-approval": "waiting for approval",
    "promoting": "promoting",
    "promoted": "promoted",
    "coverage-refused": "refused: machines not covered"
  };
  function tone(value) {
    var v = str(value).toLowerCase();
    for (var t in TONES) if (TONES[t].indexOf(v) >= 0) return t;
    return "idle";
  }
  function badge(value, label) {
    return h("span", { class: "badge tone-" + tone(value), text: label || PHASES[str(value)] || str(value) || "-" });
  }

  // ------------------------------------------------------------------ identity and HTTP
  function localName() {
    try {
      var fromUrl = new URLSearchParams(location.search).get("as");
      if (fromUrl) sessionStorage.setItem(LOCAL_KEY, fromUrl);
      return sessionStorage.getItem(LOCAL_KEY) || "";
    } catch (e) { return ""; }
  }
  function headers(extra) {
    var out = { "Accept": "application/json", "X-PatchRings-CSRF": "1" };
    var name = localName();
    if (name) out["X-PatchRings-Approver"] = name;
    Object.keys(extra || {}).forEach(function (k) { out[k] = extra[k]; });
    return out;
  }
  function call(method, path, body) {
    var init = { method: method, credentials: "same-origin", cache: "no-store",
      headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
    if (body !== undefined) init.body = JSON.stringify(body);
    return fetch(BASE + path, init).then(function (resp) {
      return resp.text().then(function (text) {
        var json = null;
        try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
        return { status: resp.status, ok: resp.ok, body: json };
      });
    });
  }
  function errorText(result) {
    var err = obj(obj(result.body).error);
    return (err.message || ("HTTP " + result.status)) + (err.code ? " (" + err.code + ")" : "");
  }

  function drawMe() {
    var box = clear(document.getElementById("me"));
    var me = state.me;
    if (me) {
      var local = me.mode !== "app-service-authentication";
      append(box, [
        local ? "Acting as " : "Signed in as ",
        h("span", { class: "who", id: "me-name", text: me.name }),
        local ? h("span", { class: "muted", text: " (local platform, not authenticated)" })
          : h("span", { class: "muted", text: " (Entra ID)" }),
        " · ",
        arr(me.approverOf).length ? "approver of " + arr(me.approverOf).join(", ") : "not an approver of any ring",
        me.signOut ? [" · ", h("a", { href: me.signOut, text: "Sign out" })] : null
      ]);
      if (local) append(box, [" ", localForm(me.name)]);
      return;
    }
    var err = obj(obj(state.meError).error);
    if (err.field === "X-PatchRings-Approver") {
      append(box, [h("span", { class: "error", text: "Local platform: say who you are. " }), localForm("")]);
    } else if (obj(err.details).signIn) {
      append(box, [h("span", { class: "error", text: "Not signed in. " }), h("a", { href: err.details.signIn, text: "Sign in" })]);
    } else {
      append(box, h("span", { class: "error", text: err.message || "Could not tell who you are." }));
    }
  }
  function localForm(current) {
    var input = h("input", { type: "text", id: "as-name", name: "as", value: current, autocomplete: "username",
      placeholder: "you@contoso.com", size: 22 });
    return h("form", { class: "as-form", onsubmit: function (ev) {
      ev.preventDefault();
      try { sessionStorage.setItem(LOCAL_KEY, input.value.trim()); } catch (e) { /* private mode */ }
      var url = new URL(location.href);
      url.searchParams.set("as", input.value.trim());
      history.replaceState(null, "", url.toString());
      start();
    } }, h("label", { for: "as-name", text: "Act as" }), input, h("button", { type: "submit", text: "Use" }));
  }

  // ------------------------------------------------------------------ list page
  function listPage(main) {
    document.title = "Rollouts - PatchRings";
    var gen = ++state.gen;
    var section = h("section", { id: "section-list" });
    var status = h("p", { class: "muted", id: "list-status" });
    clear(main);
    append(main, [h("h1", { id: "list-title", text: "Rollouts" }), status, section]);
    function load() {
      if (gen !== state.gen) return;
      call("GET", "/api/rollouts").then(function (res) {
        if (gen !== state.gen) return;
        if (!res.ok) { status.textContent = errorText(res); return; }
        var items = arr(obj(res.body).rollouts);
        status.textContent = items.length + " rollout(s); refreshed every " + REFRESH_MS / 1000 + " s.";
        renderIf(section, items, function (el) { append(el, rolloutTable(items)); });
      }).catch(function (e) { status.textContent = "Could not load rollouts: " + e; })
        .then(function () { if (gen === state.gen) schedule(load); });
    }
    load();
  }
  function rolloutTable(items) {
    if (!items.length) return h("p", { text: "No rollouts yet." });
    var rows = items.map(function (it) {
      var w = obj(it.waitingFor);
      var waiting = w.what ? [str(w.what), w.ring ? " of " + w.ring : "", w.until ? " until " : "", w.until ? time(w.until) : null] : "-";
      var href = it.pagePath || (BASE + "/rollouts/" + encodeURIComponent(it.id));
      return h("tr", null,
        h("th", { scope: "row" }, h("a", { href: href, text: it.id })),
        h("td", null, badge(it.state || it.runtimeStatus)),
        h("td", null, str(it.runtimeStatus)),
        h("td", null, str(it.currentRing || "-")),
        h("td", null, waiting),
        h("td", null, it.dryRun ? "dry run" : "rollout"),
        h("td", null, str(it.initiator || "-")),
        h("td", null, time(it.createdTime)),
        h("td", null, time(it.lastUpdatedTime)),
        h("td", null, str(typeof it.outcome === "object" && it.outcome ? (it.outcome.outcome || it.outcome.state || JSON.stringify(it.outcome)) : (it.outcome || "-"))));
    });
    return h("div", { class: "table-wrap" }, h("table", { id: "rollouts" },
      h("caption", { text: "Newest first. Open a rollout to see its rings, VMs and decisions." }),
      h("thead", null, h("tr", null, ["Rollout", "State", "Runtime", "Current ring", "Waiting for", "Kind",
        "Started by", "Created", "Updated", "Outcome"].map(function (t) { return h("th", { scope: "col", text: t }); }))),
      h("tbody", null, rows)));
  }

  // ------------------------------------------------------------------ rollout page
  function rolloutPage(main, id) {
    state.rolloutId = id;
    var gen = ++state.gen;
    document.title = id + " - PatchRings";
    var S = {};
    ["summary", "decision", "quarantine", "controls", "timeline", "dryrun", "vms", "manifest", "decisions"].forEach(function (k) {
      S[k] = h("section", { id: "section-" + k });
    });
    var message = h("div", { id: "action-message", class: "message", role: "status", "aria-live": "polite" });
    var updated = h("p", { class: "muted", id: "updated" });  // not live: it changes on every refresh
    // VM section: the filter survives refreshes; only the table body is redrawn.
    var filter = h("input", { type: "search", id: "vm-filter", name: "vm-filter", placeholder: "name, ring, state, reason…",
      "aria-controls": "vm-table", oninput: function () { applyFilter(); } });
    var showIds = h("input", { type: "checkbox", id: "vm-ids", onchange: function () {
      vmTable.classList.toggle("show-ids", showIds.checked); } });
    var vmCount = h("p", { id: "vm-count", class: "muted", "aria-live": "polite" });
    var vmBody = h("tbody");
    var vmTable = h("table", { id: "vm-table" },
      h("caption", { text: "Machines of every ring: results from the ledger. Names are short; tick \u201cshow full ids\u201d for the ARM ids." }),
      h("thead", null, h("tr", null, ["VM", "Ring", "Kind", "OS", "Install", "Install status", "Patches", "Reboot", "Health", "Verdict", "Reasons"]
        .map(function (t) { return h("th", { scope: "col", text: t }); }))),
      vmBody);
    append(S.vms, [h("h2", { id: "vms-title", text: "Machines" }),
      h("div", { class: "filters" },
        h("span", null, h("label", { for: "vm-filter", text: "Filter machines " }), filter),
        h("span", null, showIds, h("label", { for: "vm-ids", class: "check", text: " show full ids" }))),
      vmCount, h("div", { class: "table-wrap" }, vmTable)]);

    function applyFilter() {
      var q = filter.value.trim().toLowerCase();
      var rows = vmBody.rows, shown = 0;
      for (var i = 0; i < rows.length; i++) {
        var match = !q || rows[i].textContent.toLowerCase().indexOf(q) >= 0;
        rows[i].hidden = !match;
        if (match) shown++;
      }
      vmCount.textContent = rows.length ? (q ? shown + " of " + rows.length + " machines match" : rows.length + " machines")
        : "No machine results yet.";
    }

    clear(main);
    append(main, [h("h1", { id: "summary-title", text: "Rollout " + id }), updated, message,
      S.summary, S.decision, S.quarantine, S.controls, S.timeline, S.dryrun, S.vms, S.manifest, S.decisions]);

    function say(text, ok) {
      message.className = "message " + (ok ? "ok" : "error");
      message.setAttribute("role", ok ? "status" : "alert");
      message.textContent = text;
    }
    function act(button, path, body, done) {
      if (state.busy) return;
      state.busy = true;
      button.disabled = true;
      call("POST", path, body).then(function (res) {
        if (res.status === 202 || res.ok) say(done, true);
        else say(errorText(res), false);
      }).catch(function (e) { say("Request failed: " + e, false); })
        .then(function () { state.busy = false; button.disabled = false; load(true); });
    }

    function load(now) {
      if (gen !== state.gen) return;
      if (state.timer) { clearTimeout(state.timer); state.timer = null; }
      call("GET", "/api/rollouts/" + encodeURIComponent(id)).then(function (res) {
        if (gen !== state.gen) return;
        if (!res.ok) {
          updated.textContent = "";
          if (message.textContent !== errorText(res)) say(errorText(res), false);
          return;
        }
        var doc = obj(res.body);
        state.view = doc;
        draw(doc);
        updated.textContent = "Updated " + (doc.lastUpdatedTime || "") + " (rollout time); this page refreshes every " +
          REFRESH_MS / 1000 + " s.";
      }).catch(function (e) { updated.textContent = "Could not load the rollout: " + e; })
        .then(function () { if (gen === state.gen && (!now || !state.timer)) schedule(load); });
    }

    function draw(doc) {
      var st = obj(doc.status);
      var waiting = obj(doc.waitingFor || st.waitingFor);
      var viewer = obj(doc.viewer);
      drawSummary(S.summary, doc, st, waiting);
      drawDecision(S.decision, doc, waiting, viewer);
      drawQuarantine(S.quarantine, doc, waiting);
      drawControls(S.controls, doc, st, viewer);
      drawTimeline(S.timeline, doc, st);
      drawDryRun(S.dryrun, doc, st);
      drawVms(doc, st);
      drawManifest(S.manifest, doc, st);
      drawDecisions(S.decisions, doc, st);
    }

    function drawSummary(el, doc, st, waiting) {
      var plan = obj(st.plan);
      var key = [doc.state, doc.runtimeStatus, st.currentRing, waiting, doc.outcome, st.outcome, doc.halted, st.halted, plan, st.initiator, st.reason];
      renderIf(el, key, function () {
        var facts = [
          ["State", [badge(doc.state || st.state), " ", h("span", { class: "muted", text: "(" + str(doc.runtimeStatus) + ")" })]],
          ["Current ring", str(st.currentRing || doc.currentRing || "-")],
          ["Waiting for", waiting.what ? [str(waiting.what), waiting.ring ? " of " + waiting.ring : "",
            waiting.until ? [" until ", time(waiting.until)] : "", waiting.reason ? " (" + waiting.reason + ")" : ""] : "-"],
          ["Plan", [str(plan.name || "-"), plan.hash ? [" ", h("code", { text: plan.hash })] : ""]],
          ["Started by", str(st.initiator || "-") + (st.reason ? " - " + st.reason : "")],
          ["Started", time(st.startedAt || doc.createdTime)],
          ["Kind", st.dryRun ? "dry run" : "rollout"]
        ];
        if (doc.halted || st.halted) facts.push(["Halted", describe(doc.halted || st.halted)]);
        if (doc.outcome || st.outcome) facts.push(["Outcome", describe(doc.outcome || st.outcome)]);
        if (doc.output && typeof doc.output === "object" && doc.output.outcome) facts.push(["Result", describe(doc.output.outcome)]);
        append(el, [h("h2", { class: "sr-only", id: "summary-facts", text: "Summary" }), factList(facts)]);
      });
    }

    function drawDecision(el, doc, waiting, viewer) {
      var pending = waiting.what === "approval";
      var quarantine = pending && waiting.kind === "quarantine";
      var q = obj(doc.quarantine);
      var key = pending ? [waiting.ring, waiting.manifestHash, waiting.kind, viewer.mayApprove, viewer.mayReject,
        viewer.decideReason, quarantine ? [q.decision, arr(q.entries).map(function (e) { return [obj(e).id, obj(e).released]; }), q.error] : null] : null;
      renderIf(el, key, function () {
        if (!pending) return;
        // The hash the page SHOWS is the hash the decision is bound to: captured here, sent as is.
        var shownHash = str(waiting.manifestHash);
        var ring = str(waiting.ring);
        var comment = h("textarea", { id: "decision-comment", name: "comment", rows: 2, maxlength: 4096,
          "aria-describedby": "decision-help" });
        // A quarantine decision (issue 11): the entries it is about, each with a checkbox; the
        // ticked ones go in the approve body's releaseQuarantine (what the CLI's
        // --release-quarantine sends). Nothing ticked: approve installs without their patches.
        var release = quarantine ? releaseChoice(waiting, q, viewer) : null;
        function body() {
          var out = { manifestHash: shownHash, comment: comment.value };
          var chosen = release ? release.chosen() : [];
          if (chosen.length) out.releaseQuarantine = chosen;
          return out;
        }
        var approve = h("button", { type: "button", class: "primary", id: "approve", disabled: !viewer.mayApprove,
          "aria-describedby": release ? "release-summary" : null,
          text: "Approve " + ring, onclick: function () {
            var sent = body();
            var what = sent.releaseQuarantine ? " releasing " + sent.releaseQuarantine.join(", ") : "";
            act(approve, "/api/rollouts/" + encodeURIComponent(id) + "/rings/" + encodeURIComponent(ring) + "/approve",
              sent, "Approved " + ring + " (" + (quarantine ? "decision " : "manifest ") + shownHash + ")" + what + ": submitted.");
          } });
        var reject = h("button", { type: "button", class: "danger", id: "reject", disabled: !viewer.mayReject,
          text: "Reject " + ring, onclick: function () {
            act(reject, "/api/rollouts/" + encodeURIComponent(id) + "/rings/" + encodeURIComponent(ring) + "/reject",
              { manifestHash: shownHash, comment: comment.value },
              "Rejected " + ring + " (" + (quarantine ? "decision " : "manifest ") + shownHash + "): submitted.");
          } });
        var may = viewer.mayApprove ? (quarantine ? "You may approve (releasing the entries you tick) or reject." : "You may approve or reject.")
          : (viewer.mayReject ? "You may reject; " : "You may not decide: ") + (viewer.decideReason || "");
        var intro = quarantine
          ? h("p", null, "Ring ", h("strong", { text: ring }), " has not started: patches a failed gate quarantined are active. ",
            "The decision is bound to ", h("code", { id: "shown-hash", text: shownHash }),
            waiting.until ? [" and due before ", time(waiting.until), " (no decision by then rejects)"] : "",
            ". Approvers: " + arr(waiting.approvers).join(", ") + ".")
          : h("p", null, "Promote ", h("strong", { text: ring }), " with manifest ", h("code", { id: "shown-hash", text: shownHash }),
            waiting.until ? [" before ", time(waiting.until)] : "", ". Approvers: " + arr(waiting.approvers).join(", ") + ".");
        append(el, h("div", { class: "panel attention" },
          h("h2", { id: "decision-title", text: quarantine ? "Quarantine decision before " + ring : "Approval needed: " + ring }),
          intro,
          h("p", { id: "may-decide", text: may }),
          h("form", { class: release ? "wide" : null, onsubmit: function (ev) { ev.preventDefault(); } },
            release ? release.el : null,
            h("label", { for: "decision-comment", text: "Comment (recorded with your decision)" }), comment,
            h("p", { id: "decision-help", class: "muted", text: quarantine
              ? "The decision is bound to " + shownHash + " (the entries listed); if the rollout's quarantine has changed the API refuses it."
              : "The decision is bound to manifest " + shownHash + " as shown; if the rollout's pending manifest has changed the API refuses it." }),
            h("div", { class: "buttons" }, approve, reject))));
      });
    }

    // The entries of a pending quarantine decision, one labelled checkbox each (keyboard: Tab to
    // a box, Space to tick it). Entry details come from the ledger (doc.quarantine); an id the
    // status names but the ledger did not return is still offered, by its id.
    function releaseChoice(waiting, q, viewer) {
      var wq = obj(waiting.quarantine);
      var ids = arr(q.decision).length ? arr(q.decision) : arr(wq.entries);
      var byId = {};
      arr(q.entries).forEach(function (e) { byId[str(obj(e).id)] = obj(e); });
      var boxes = [];
      var summary = h("p", { id: "release-summary", class: "muted", "aria-live": "polite" });
      function chosen() { return boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; }); }
      function say() {
        var c = chosen();
        summary.textContent = c.length
          ? "Approve releases " + c.length + " of " + ids.length + " entr" + (c.length === 1 ? "y" : "ies") + " (" + c.join(", ") +
            "): their patches are no longer quarantined and " + str(waiting.ring) + " installs them" +
            (c.length < ids.length ? "; it still leaves out the patches of the entries not ticked." : " as the plan says.")
          : "Nothing ticked: approve installs " + str(waiting.ring) + " without the quarantined patches (" +
            str(wq.patchCount !== undefined ? wq.patchCount : "?") + " patch(es) of " + ids.length + " entr" + (ids.length === 1 ? "y" : "ies") + ").";
      }
      var rows = ids.map(function (entryId, i) {
        var e = byId[str(entryId)] || {};
        var box = h("input", { type: "checkbox", id: "release-" + i, name: "releaseQuarantine", value: str(entryId),
          disabled: !viewer.mayRelease, "aria-describedby": "release-why-" + i, onchange: say });
        boxes.push(box);
        var patches = arr(e.kbs).map(function (k) { return "KB" + str(k).replace(/^KB/i, ""); }).concat(arr(e.packages).map(str));
        return h("tr", { "data-entry": str(entryId) },
          h("td", { class: "pick" }, box, h("label", { for: "release-" + i, class: "check", text: "Release " + str(entryId) })),
          h("td", { class: "mono", text: patches.length ? patches.join(", ") : "-" }),
          h("td", { id: "release-why-" + i }, str(e.reason || "-"),
            arr(e.failedVms).length ? h("span", { class: "muted", text: " (failed: " + arr(e.failedVms).join(", ") + ")" }) : ""),
          h("td", null, e.rolloutId ? h("a", { href: BASE + "/rollouts/" + encodeURIComponent(e.rolloutId), text: e.rolloutId }) : "-",
            e.ring ? " / " + str(e.ring) : ""),
          h("td", null, time(e.at)));
      });
      say();
      var el = h("fieldset", { class: "release", id: "quarantine-release" },
        h("legend", { text: "Quarantined entries: tick those to release" }),
        q.error ? h("p", { class: "error", text: "Entry details unavailable: " + str(q.error) }) : null,
        h("div", { class: "table-wrap" }, h("table", { id: "quarantine-entries" },
          h("caption", { text: "Patches a failed gate blamed; " + str(waiting.ring) + " leaves them out unless released" +
            (wq.entryCount > ids.length ? " (first " + ids.length + " of " + wq.entryCount + " entries)" : "") }),
          h("thead", null, h("tr", null, ["Release", "Patches", "Why", "From rollout / ring", "When"].map(function (t) {
            return h("th", { scope: "col", text: t }); }))),
          h("tbody", null, rows))),
        summary);
      return { el: el, chosen: chosen };
    }

    // The quarantine entries this rollout honoured, decided on, released or recorded (issue 11).
    function drawQuarantine(el, doc, waiting) {
      var q = obj(doc.quarantine);
      var deciding = waiting.what === "approval" && waiting.kind === "quarantine";
      var entries = arr(q.entries);
      renderIf(el, deciding ? null : [entries, q.error], function () {
        if (deciding || (!entries.length && !q.error)) return;
        append(el, h("h2", { id: "quarantine-title", text: "Quarantine" + (q.planName ? " of plan " + q.planName : "") }));
        if (q.error) append(el, h("p", { class: "error", text: "Quarantine unavailable: " + str(q.error) }));
        if (!entries.length) return;
        append(el, h("div", { class: "table-wrap" }, h("table", { id: "quarantine-state" },
          h("caption", { text: "Entries this rollout honoured, decided on or recorded; an active entry's patches are left out of Ring 0." }),
          h("thead", null, h("tr", null, ["Entry", "State", "Patches", "Why", "From rollout / ring", "When"].map(function (t) {
            return h("th", { scope: "col", text: t }); }))),
          h("tbody", null, entries.map(function (e) {
            e = obj(e);
            var patches = arr(e.kbs).map(function (k) { return "KB" + str(k).replace(/^KB/i, ""); }).concat(arr(e.packages).map(str));
            return h("tr", { "data-entry": str(e.id) },
              h("th", { scope: "row", class: "mono", text: str(e.id) }),
              h("td", null, e.released ? [badge("released"), " by " + str(e.releasedBy || "?"), e.releasedAt ? [" at ", time(e.releasedAt)] : ""]
                : badge("quarantined")),
              h("td", { class: "mono", text: patches.join(", ") || "-" }),
              h("td", { text: str(e.reason || "-") }),
              h("td", null, e.rolloutId ? h("a", { href: BASE + "/rollouts/" + encodeURIComponent(e.rolloutId), text: e.rolloutId }) : "-",
                e.ring ? " / " + str(e.ring) : ""),
              h("td", null, time(e.at)));
          })))));
      });
    }

    function drawControls(el, doc, st, viewer) {
      var key = [viewer.mayHalt, viewer.haltReason, viewer.mayResume, viewer.resumeReason, doc.state];
      renderIf(el, key, function () {
        if (!viewer.mayHalt && !viewer.haltReason && !viewer.mayResume && !viewer.resumeReason) return;
        var reason = h("input", { type: "text", id: "control-reason", name: "reason", maxlength: 4096, size: 40 });
        var buttons = [];
        if (viewer.mayHalt) {
          var halt = h("button", { type: "button", class: "danger", id: "halt", text: "Halt rollout", onclick: function () {
            act(halt, "/api/rollouts/" + encodeURIComponent(id) + "/halt", { reason: reason.value || null },
              "Halt requested: later rings stay closed until resumed.");
          } });
          buttons.push(halt);
        }
        if (viewer.mayResume || viewer.resumeReason) {
          var resume = h("button", { type: "button", id: "resume", text: "Resume rollout", disabled: !viewer.mayResume, onclick: function () {
            act(resume, "/api/rollouts/" + encodeURIComponent(id) + "/resume", { reason: reason.value || null },
              "Resume requested.");
          } });
          buttons.push(resume);
        }
        append(el, h("div", { class: "panel" },
          h("h2", { id: "controls-title", text: "Halt or resume" }),
          viewer.haltReason ? h("p", { id: "halt-reason", text: "Halt: " + viewer.haltReason + "." }) : null,
          viewer.resumeReason ? h("p", { text: viewer.resumeReason }) : null,
          buttons.length ? h("form", { onsubmit: function (ev) { ev.preventDefault(); } },
            h("label", { for: "control-reason", text: "Reason (recorded)" }), reason,
            h("div", { class: "buttons" }, buttons)) : null));
      });
    }

    // The API's counts add up: vms = passed + failed + inconclusive + inFlight + skipped + notStarted.
    // Shown in that order with words; zero in-flight figures are left out unless the ring runs.
    var COUNT_LABELS = [["vms", "VMs"], ["passed", "passed"], ["failed", "failed"], ["inconclusive", "inconclusive"],
      ["inFlight", "in flight"], ["installing", "installing"], ["verifying", "verifying"],
      ["skipped", "never started"], ["notStarted", "not started"]];
    var KNOWN_COUNTS = COUNT_LABELS.map(function (p) { return p[0]; }).concat(["finished"]);
    function countItems(c) {
      if ((c.vms === null || c.vms === undefined) && !c.finished && !c.inFlight && !c.skipped &&
          ("vms" in c || "notStarted" in c)) { return []; }  // a ring not resolved yet: its size is unknown
      var running = (c.inFlight || 0) + (c.installing || 0) + (c.verifying || 0) > 0;
      var pairs = COUNT_LABELS.filter(function (p) {
        var v = c[p[0]];
        if (v === null || v === undefined) { return false; }
        if (!running && (p[0] === "inFlight" || p[0] === "installing" || p[0] === "verifying")) { return false; }
        return !(p[0] === "skipped" && !v);
      });
      // an older API's counts (install:ok...) are still shown as they are
      Object.keys(c).forEach(function (k) {
        if (KNOWN_COUNTS.indexOf(k) < 0 && c[k] !== null && c[k] !== undefined) { pairs.push([k, k]); }
      });
      return pairs.map(function (p) { return h("li", null, h("span", { class: "muted", text: p[1] + " " }), str(c[p[0]])); });
    }

    function drawTimeline(el, doc, st) {
      var rings = arr(doc.rings).length ? arr(doc.rings) : arr(st.rings);
      var currentRing = st.currentRing || doc.currentRing;
      renderIf(el, [rings.map(function (r) { var c = Object.assign({}, obj(r)); delete c.vms; return c; }), currentRing], function () {
        append(el, h("h2", { id: "timeline-title", text: "Rings" }));
        if (!rings.length) { append(el, h("p", { text: "No rings yet." })); return; }
        append(el, h("ol", { class: "timeline", id: "timeline" }, rings.map(function (r, i) {
          var gate = obj(r.gate);
          var current = r.current === true || r.name === currentRing;
          var counts = countItems(obj(r.counts));
          var reasons = arr(r.gateReasons).length ? arr(r.gateReasons) : arr(gate.reasons);
          var progress = obj(r.progress);
          var edge = tone(gate.outcome || r.phase);
          return h("li", { id: "ring-" + r.name, class: (current ? "current " : "") + (edge !== "idle" ? "tone-" + edge + "-edge" : ""),
            "aria-current": current ? "step" : null },
            h("div", { class: "ring-head" }, h("h3", { text: "Ring " + i + ": " + str(r.name) }),
              h("span", { class: "phase", "data-phase": str(r.phase) }, badge(r.phase))),
            h("p", { class: "phase-text", text: str(r.phaseText || PHASES[str(r.phase)] || r.phase || "") }),
            h("p", { class: "muted" }, str(r.patching || "") + (r.patching ? " patching" : ""),
              progress.waves ? " · wave " + str(progress.wave || 1) + " of " + str(progress.waves) : "",
              progress.step ? " · " + str(progress.step) : "",
              r.until && str(r.phaseText).indexOf(str(r.until)) < 0 ? [" · until ", time(r.until)] : "", r.opened ? " · opened" : ""),
            counts.length ? h("ul", { class: "counts", "aria-label": "counts of " + r.name }, counts) : null,
            waves(r),
            runs(r),
            r.target ? h("p", null, "Target run: ", describe(r.target)) : null,
            gate.outcome ? h("p", null, "Gate: ", badge(gate.outcome), " ", str(gate.summary || "")) : null,
            r.vmsOmitted ? h("p", { class: "muted", text: r.vmsOmitted + " more machines not listed" }) : null,
            reasons.length ? h("div", null, h("p", { class: "muted", text: "Gate reasons" + (reasons.length > 10 ? " (first 10 of " + reasons.length + ")" : "") }),
              h("ul", { class: "reasons" }, reasons.slice(0, 10).map(function (x) { return h("li", null, reasonText(x)); }))) : null);
        })));
      });
    }
    function waves(r) {
      var list = arr(r.waves);
      if (!list.length) return null;
      return h("ol", { class: "waves", "aria-label": "waves of " + r.name }, list.map(function (w, i) {
        w = obj(w);
        var vms = arr(w.vms).map(function (v) { return typeof v === "string" ? shortName(v) : str(obj(v).name || shortName(obj(v).id)); });
        return h("li", null, "Wave " + (w.index !== undefined ? w.index : i + 1) + (list.length ? " of " + list.length : "") + ": ",
          badge(w.phase || w.state || "pending"), vms.length ? " " + vms.join(", ") : "",
          w.counts ? " " + Object.keys(obj(w.counts)).map(function (k) { return k + " " + w.counts[k]; }).join(", ") : "");
      }));
    }
    function runs(r) {
      var list = arr(r.runs);
      if (!list.length) return null;
      return h("ul", { class: "plain", "aria-label": "maintenance runs of " + r.name }, list.map(function (x) {
        x = obj(x);
        return h("li", null, "Run ", h("code", { text: shortName(x.correlationId || x.runId || x.id || "") }), " ",
          badge(x.status || x.state || x.outcome || "-"), x.startDateTime ? [" at ", time(x.startDateTime)] : "");
      }));
    }

    function drawVms(doc, st) {
      var rows = vmRows(doc, st);
      var key = rows;
      if (vmBody.dataset.key === JSON.stringify(key)) return;
      vmBody.dataset.key = JSON.stringify(key);
      clear(vmBody);
      rows.forEach(function (r) {
        append(vmBody, h("tr", { "data-ring": r.ring, "data-vm": r.name },
          h("th", { scope: "row" }, h("span", { class: "vmname", title: r.id, text: r.name }), h("span", { class: "fullid", text: r.id })),
          h("td", { text: r.ring }), h("td", { text: r.kind }), h("td", { text: r.os }),
          h("td", null, badge(r.state)), h("td", null, r.install ? badge(r.install) : "-"),
          h("td", { text: r.patches }), h("td", { text: r.reboot }),
          h("td", null, r.health ? badge(r.health) : "-"), h("td", null, r.outcome ? badge(r.outcome) : "-"),
          h("td", null, r.reasons.length ? h("ul", { class: "reasons" }, r.reasons.map(function (x) { return h("li", null, reasonText(x)); })) : "")));
      });
      applyFilter();
    }

    function drawDryRun(el, doc, st) {
      var out = obj(doc.output);
      var rings = arr(out.rings).filter(function (r) { return r && typeof r === "object" && Array.isArray(r.vms); });
      renderIf(el, rings, function () {
        if (!rings.length) return;
        append(el, h("h2", { id: "dryrun-title", text: "Dry run: what each ring would install" }));
        rings.forEach(function (r) {
          var sum = obj(r.summary);
          var reasons = obj(sum.filteredByReason);
          append(el, h("div", { class: "dry-ring", "data-ring": str(r.ring) },
            h("h3", { text: str(r.ring) + (r.patching ? " (" + r.patching + " patching)" : "") }),
            h("p", null, str(sum.vms) + " machine(s), " + str(sum.assessed) + " assessed; " + str(sum.wouldInstall) +
              " patch installation(s) would happen" + (sum.filtered ? ", " + sum.filtered + " filtered out (" +
              Object.keys(reasons).map(function (k) { return k + " " + reasons[k]; }).join(", ") + ")" : "") +
              (sum.errors ? "; " + sum.errors + " error(s)" : "") + (r.basis ? ". Basis: " + r.basis : "") + "."),
            arr(r.warnings).length ? h("ul", { class: "reasons" }, arr(r.warnings).map(function (w) { return h("li", null, reasonText(w)); })) : null,
            arr(sum.patches).length ? h("div", { class: "table-wrap" }, h("table", { class: "dry-patches" },
              h("caption", { text: "Patches " + str(r.ring) + " would install" }),
              h("thead", null, h("tr", null, ["Patch", "Classification", "Machines"].map(function (t) { return h("th", { scope: "col", text: t }); }))),
              h("tbody", null, arr(sum.patches).map(function (x) {
                x = obj(x);
                return h("tr", null, h("th", { scope: "row", class: "mono", text: str(x.patch) }),
                  h("td", { text: arr(x.classifications).join(", ") || "-" }), h("td", { text: str(x.vms) }));
              })))) : h("p", { class: "muted", text: "Nothing would be installed." }),
            h("div", { class: "table-wrap" }, h("table", { class: "dry-vms" },
              h("caption", { text: "Per machine in " + str(r.ring) }),
              h("thead", null, h("tr", null, ["Machine", "Kind", "OS", "Assessed", "Would install", "Filtered", "Patches"]
                .map(function (t) { return h("th", { scope: "col", text: t }); }))),
              h("tbody", null, arr(r.vms).map(function (v) {
                v = obj(v);
                var list = arr(v.wouldInstall).map(function (x) { return str(obj(x).patch || x); });
                return h("tr", { "data-vm": str(v.name) }, h("th", { scope: "row" }, h("span", { title: str(v.vm), text: str(v.name || shortName(v.vm)) })),
                  h("td", { text: str(v.kind || "vm") }), h("td", { text: str(v.os || "-") }),
                  h("td", null, v.assessed ? badge("ok", "yes") : badge("missing", v.error ? "no: " + str(obj(v.error).message || obj(v.error).code || "") : "no")),
                  h("td", { text: str(v.wouldInstallCount !== undefined ? v.wouldInstallCount : list.length) }),
                  h("td", { text: str(v.filteredCount || 0) }),
                  h("td", { class: "mono", text: list.slice(0, 10).join(", ") + (list.length > 10 ? ", \u2026" : "") }));
              }))))));
        });
      });
    }

    function drawManifest(el, doc, st) {
      var m = obj(doc.manifest || st.manifest);
      var diff = m.diff || doc.manifestDiff || st.manifestDiff || doc.diff || ringDiffs(doc) || null;
      renderIf(el, [m, diff], function () {
        append(el, h("h2", { id: "manifest-title", text: "Manifest" }));
        if (!Object.keys(m).length) { append(el, h("p", { text: "No manifest yet: it is built from Ring 0's results." })); return; }
        var kbs = Array.isArray(m.windows) ? m.windows : arr(m.windowsKbs || m.kbs || obj(m.windows).kbNumbers);
        var pkgs = Array.isArray(m.linux) ? m.linux : arr(m.linuxPackages || m.packages || obj(m.linux).packages);
        var excluded = Array.isArray(m.excluded) ? m.excluded.length : (m.excludedCount || 0);
        append(el, [
          h("p", null, "Hash ", h("code", { id: "manifest-hash", text: str(m.hash) }),
            " · " + kbs.length + " Windows KB(s)" + (m.windowsCount !== undefined && m.windowsCount !== kbs.length ? " (of " + m.windowsCount + ")" : "") +
            ", " + pkgs.length + " Linux package(s)" + (m.linuxCount !== undefined && m.linuxCount !== pkgs.length ? " (of " + m.linuxCount + ")" : "") +
            (excluded ? ", " + excluded + " excluded" : "") + (m.cutoff ? ", published before " + m.cutoff : "")),
          h("div", { class: "cols" },
            h("div", null, h("h3", { text: "Windows KBs" }), kbTable(kbs)),
            h("div", null, h("h3", { text: "Linux packages" }), pkgTable(pkgs)))
        ]);
        if (arr(m.coverage).length) append(el, [h("h3", { text: "Built from (images covered by Ring 0)" }), valueView(m.coverage)]);
        if (arr(m.sources).length) append(el, h("p", { class: "muted", text: "Sources: " + m.sources.join(", ") }));
        append(el, h("h3", { id: "diff-title", text: "What later rings' machines would install, compared with the manifest" }));
        append(el, diff ? diffView(diff) : h("p", { class: "muted", text: "No comparison yet." }));
      });
    }

    function drawDecisions(el, doc, st) {
      var ledger = obj(doc.ledger);
      var taken = arr(st.approvals);
      var recorded = Array.isArray(doc.approvals) ? doc.approvals : arr(ledger.approvals);
      renderIf(el, [taken, recorded, ledger.error], function () {
        append(el, h("h2", { id: "decisions-title", text: "Decisions and approvals" }));
        if (ledger.error) append(el, h("p", { class: "error", text: "Ledger unavailable: " + ledger.error }));
        if (taken.length) append(el, decisionTable("decisions-taken", "Decisions the rollout acted on", taken));
        if (recorded.length) {
          var rows = recorded.slice().sort(function (a, b) { return str(obj(a).at || obj(a).decidedAt) < str(obj(b).at || obj(b).decidedAt) ? -1 : 1; });
          append(el, decisionTable("decisions-ledger", "Every request recorded in the ledger (accepted or refused)", rows));
        }
        if (!taken.length && !recorded.length) append(el, h("p", { text: "No decisions yet." }));
      });
    }

    load();
  }

  // ------------------------------------------------------------------ pieces
  function factList(facts) {
    return h("dl", { class: "facts" }, facts.map(function (f) { return [h("dt", { text: f[0] }), h("dd", null, f[1])]; }));
  }
  function describe(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v !== "object") return str(v);
    var o = obj(v);
    var parts = [];
    ["outcome", "state", "status", "reason", "summary", "by", "ring", "at", "startDateTime"].forEach(function (k) {
      if (o[k] !== undefined && o[k] !== null && typeof o[k] !== "object") parts.push(k === "at" || k === "startDateTime" ? "at " + o[k] : (k === "by" ? "by " + o[k] : str(o[k])));
    });
    return parts.length ? parts.join(" · ") : JSON.stringify(v);
  }
  function reasonText(x) {
    if (typeof x !== "object" || x === null) return str(x);
    var o = obj(x);
    var who = o.name || (o.vm ? shortName(o.vm) : "");
    return (who ? who + ": " : "") + str(o.reason || o.message || o.detail || o.code || JSON.stringify(o));
  }
  function vmRows(doc, st) {
    var out = [], seen = {};
    function add(ring, r) {
      r = obj(r);
      var result = obj(r.result), verdict = obj(r.verdict);
      var id = str(r.id || r.vmId || r.vm || verdict.vm || r.name);
      var name = str(r.shortName || r.name || verdict.name || shortName(id));
      ring = str(ring || r.ring);
      var k = ring + "|" + id.toLowerCase();
      if (seen[k]) return;
      seen[k] = true;
      var installed = result.installedPatchCount !== undefined ? result.installedPatchCount
        : (Array.isArray(r.installed) ? r.installed.length : r.installedPatchCount);
      var failed = result.failedPatchCount !== undefined ? result.failedPatchCount : r.failedPatchCount;
      var patches = installed === undefined && failed === undefined ? "-" :
        str(installed === undefined ? 0 : installed) + " installed" + (failed ? ", " + failed + " failed" : "");
      out.push({
        id: id, name: name, ring: ring,
        kind: str(r.kind || (/microsoft\.hybridcompute/i.test(id) ? "arc" : "vm")),
        os: str(r.os || "-"), state: str(r.install || r.state || r.status || "-"),
        install: str(result.status || r.installStatus || verdict.install || ""),
        patches: patches, reboot: str(result.rebootStatus || r.rebootStatus || "-"),
        health: str(verdict.health || r.health || ""), outcome: str(verdict.outcome || r.outcome || r.verdictOutcome || ""),
        reasons: arr(verdict.reasons).concat(arr(r.reasons)).concat(result.error ? [obj(result.error).message || result.error] : [])
      });
    }
    arr(doc.vms).forEach(function (r) { add(obj(r).ring, r); });
    arr(doc.rings).forEach(function (ring) { arr(obj(ring).vms).forEach(function (r) { add(ring.name, r); }); });
    arr(st.rings).forEach(function (ring) { arr(obj(ring).vms).forEach(function (r) { add(ring.name, r); }); });
    var results = obj(obj(doc.ledger).vmResults);
    Object.keys(results).forEach(function (ring) { arr(results[ring]).forEach(function (r) { add(ring, r); }); });
    return out;
  }
  function kbTable(kbs) {
    if (!kbs.length) return h("p", { class: "muted", text: "None." });
    return h("table", { id: "manifest-kbs" }, h("caption", { class: "sr-only", text: "Windows KBs in the manifest" }),
      h("thead", null, h("tr", null, ["KB", "Title", "Classification"].map(function (t) { return h("th", { scope: "col", text: t }); }))),
      h("tbody", null, kbs.map(function (k) {
        if (typeof k !== "object" || k === null) return h("tr", null, h("td", { text: "KB" + str(k).replace(/^KB/i, "") }), h("td", { text: "-" }), h("td", { text: "-" }));
        var o = obj(k);
        var kb = str(o.kbId || o.kb || o.id || o.name).replace(/^KB/i, "");
        var cls = o.classifications || o.classification;
        return h("tr", null, h("td", { text: "KB" + kb }), h("td", { text: str(o.title || o.patchName || "-") }),
          h("td", { text: Array.isArray(cls) ? cls.join(", ") : str(cls || "-") }));
      })));
  }
  function pkgTable(pkgs) {
    if (!pkgs.length) return h("p", { class: "muted", text: "None." });
    return h("table", { id: "manifest-packages" }, h("caption", { class: "sr-only", text: "Linux packages in the manifest" }),
      h("thead", null, h("tr", null, ["Package", "Version", "Classification"].map(function (t) { return h("th", { scope: "col", text: t }); }))),
      h("tbody", null, pkgs.map(function (p) {
        var name, version, cls;
        var text = typeof p === "object" && p !== null ? str(p.package || "") : str(p);
        if (typeof p === "object" && p !== null) { name = p.name; version = p.version; cls = p.classifications || p.classification; }
        if (!name && text) { var i = text.indexOf("="); name = i > 0 ? text.slice(0, i) : text; version = i > 0 ? text.slice(i + 1) : ""; }
        return h("tr", null, h("td", { class: "mono", text: str(name) }), h("td", { class: "mono", text: str(version || "-") }),
          h("td", { text: Array.isArray(cls) ? cls.join(", ") : str(cls || "-") }));
      })));
  }
  function ringDiffs(doc) {
    // a per-ring diff on the ring views ({ring: diff}), when the API puts it there
    var out = {}, any = false;
    arr(doc.rings).forEach(function (r) {
      var d = obj(r).manifestDiff || obj(r).diff;
      if (d) { out[r.name] = d; any = true; }
    });
    return any ? out : null;
  }
  function diffView(diff) {
    var d = obj(diff);
    if (d.unavailable) return h("p", { id: "manifest-diff", text: "Comparison unavailable: " + str(d.reason || "unknown reason") });
    if (Array.isArray(d.rings)) {
      // manifest_diff: per later ring, what its machines' latest assessments would install vs the manifest
      if (!d.rings.length) return h("p", { id: "manifest-diff", class: "muted", text: "No later rings to compare." });
      return h("div", { id: "manifest-diff" }, d.rings.map(ringDiff),
        d.maxAgeHours ? h("p", { class: "muted", text: "Assessments older than " + d.maxAgeHours + " h count as not assessed." }) : null);
    }
    // Anything else: {ring: {...}} or a list, shown as it is.
    if (Array.isArray(diff)) {
      return h("ul", { class: "plain", id: "manifest-diff" }, diff.map(function (d) { return h("li", null, valueView(d)); }));
    }
    return h("div", { id: "manifest-diff" }, valueView(diff));
  }
  function ringDiff(entry) {
    var e = obj(entry);
    var ring = str(e.ring);
    var head = h("h4", { text: ring });
    if (e.error) return h("div", { class: "ring-diff", "data-ring": ring }, head,
      h("p", { class: "error", text: "Could not compare: " + (typeof e.error === "object" ? str(e.error.message || e.error.code) : str(e.error)) }));
    var notAssessed = arr(e.notAssessedMachines);
    var summary = str(e.machines) + " machine(s), " + str(e.assessed) + " assessed" +
      (e.notAssessed ? " (" + e.notAssessed + " not assessed" + (notAssessed.length ? ": " + notAssessed.join(", ") : "") + ")" : "") +
      "; " + str(e.wouldInstall) + " would install " + str(e.wouldInstallPatches) + " manifest patch(es).";
    var rows = [];
    arr(e.notInManifest).forEach(function (x) {
      x = obj(x);
      rows.push(h("tr", null, h("th", { scope: "row", class: "mono", text: str(x.patch) }),
        h("td", null, h("span", { class: "badge tone-warn", text: "+ not in the manifest" })),
        h("td", { text: str(x.machines) + " machine(s) would otherwise install it" })));
    });
    arr(e.inManifestNotApplicable).forEach(function (x) {
      x = obj(x);
      rows.push(h("tr", null, h("th", { scope: "row", class: "mono", text: str(x.patch) }),
        h("td", null, h("span", { class: "badge tone-idle", text: "\u2212 in the manifest, not applicable" })),
        h("td", { text: str(x.reason || "") })));
    });
    var more = [];
    if ((e.notInManifestCount || 0) > arr(e.notInManifest).length) more.push(e.notInManifestCount + " not in the manifest in all");
    if ((e.inManifestNotApplicableCount || 0) > arr(e.inManifestNotApplicable).length) more.push(e.inManifestNotApplicableCount + " not applicable in all");
    return h("div", { class: "ring-diff", "data-ring": ring }, head, h("p", { text: summary }),
      rows.length ? h("div", { class: "table-wrap" }, h("table", null,
        h("caption", { text: "How " + ring + " differs from the manifest" + (more.length ? " (" + more.join(", ") + ")" : "") }),
        h("thead", null, h("tr", null, ["Patch", "Difference", "Detail"].map(function (t) { return h("th", { scope: "col", text: t }); }))),
        h("tbody", null, rows)))
        : h("p", { class: "muted", text: e.assessed ? "No difference: what its assessed machines would install is in the manifest." : "Nothing to compare yet." }));
  }
  function valueView(v) {
    if (Array.isArray(v)) {
      if (!v.length) return h("span", { class: "muted", text: "none" });
      return h("ul", { class: "plain" }, v.map(function (x) { return h("li", null, typeof x === "object" && x !== null ? valueView(x) : str(x)); }));
    }
    if (v && typeof v === "object") {
      return h("dl", { class: "facts" }, Object.keys(v).map(function (k) { return [h("dt", { text: k }), h("dd", null, valueView(v[k]))]; }));
    }
    return h("span", { text: str(v) });
  }
  function decisionTable(id, caption, rows) {
    return h("div", { class: "table-wrap" }, h("table", { id: id }, h("caption", { text: caption }),
      h("thead", null, h("tr", null, ["When", "Ring", "Action", "By", "Outcome", "Manifest", "Comment / reason"]
        .map(function (t) { return h("th", { scope: "col", text: t }); }))),
      h("tbody", null, rows.map(function (r) {
        r = obj(r);
        var d = obj(r.decision);
        var pick = function (k) { return r[k] !== undefined && r[k] !== null ? r[k] : d[k]; };
        var err = obj(r.error);
        return h("tr", null,
          h("td", null, time(pick("at") || pick("decidedAt"))),
          h("td", { text: str(pick("ring") || "-") }),
          h("td", null, badge(pick("verdict") || pick("kind") || "-"),
            pick("kind") === "quarantine" ? h("span", { class: "muted", text: " quarantine" + (pick("choice") ? ": " + pick("choice") : "") }) : ""),
          h("td", { text: str(pick("approver") || pick("by") || r.claimedBy || "-") }),
          h("td", null, pick("outcome") ? badge(pick("outcome")) : (r.accepted === false ? badge("refused") : (r.accepted === true ? badge("accepted") : "-")),
            err.message ? h("span", { class: "muted", text: " " + err.message }) : ""),
          h("td", null, pick("manifestHash") ? h("code", { text: str(pick("manifestHash")) }) : "-"),
          h("td", null, str(pick("comment") || pick("reason") || ""),
            arr(pick("releaseQuarantine")).length ? h("span", { class: "released", text: (pick("comment") || pick("reason") ? " · " : "") +
              "released " + arr(pick("releaseQuarantine")).join(", ") }) : ""));
      }))));
  }

  // ------------------------------------------------------------------ start
  function schedule(fn) {
    if (state.timer) clearTimeout(state.timer);
    state.timer = setTimeout(function tick() {
      if (document.hidden) { state.timer = setTimeout(tick, REFRESH_MS); return; }
      state.timer = null;
      fn();
    }, REFRESH_MS);
  }

  function start() {
    if (state.timer) { clearTimeout(state.timer); state.timer = null; }
    state.gen++;
    var main = document.getElementById("main");
    call("GET", "/me").then(function (res) {
      state.me = res.ok ? res.body : null;
      state.meError = res.ok ? null : res.body;
      drawMe();
      if (!res.ok) {
        clear(main);
        append(main, [h("h1", { text: "Who are you?" }), h("p", { class: "error", role: "alert", text: errorText(res) })]);
        return;
      }
      var path = location.pathname;
      var m = path.match(/\/ui\/rollouts\/([^/]+)\/?$/i);
      if (m) rolloutPage(main, decodeURIComponent(m[1]));
      else listPage(main);
    }).catch(function (e) {
      clear(main);
      append(main, h("p", { class: "error", role: "alert", text: "Could not reach the app: " + e }));
    });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
