/* imprag-bench report page: vanilla JS, no dependencies.
 *
 * Reads the JSON of the element #report-data (written by imprag_bench/harness/report_html.py) and builds
 * the leaderboard, the paired table, the example browser and the run facts. All data text goes into the
 * page through textContent / text nodes, never innerHTML. The browser's state lives in the URL hash
 * (#task=nq&a=bm25&b=dense&filter=disagree&page=1), so a link reopens the same view. Only the visible
 * page of examples is rendered. When the first render is done, the html element gets data-ready and
 * data-render-ms (performance.now() at that point), which the tests and the benchmark read.
 */
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const PAGE = 50;
  const SAME_AS_PROMPT = 1;
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of kids) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  const fmt = (v) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(1));
  const signed = (v) => (v === null || v === undefined ? "–" : (v > 0 ? "+" : "") + Number(v).toFixed(1));

  /* A sortable table from column definitions: {label, sub, cls, value(row) for sorting, cell(row) -> td}. */
  function sortableTable(table, cols, rows, sort) {
    function draw() {
      const order = rows.slice();
      if (sort.col !== null) {
        const c = cols[sort.col];
        order.sort((x, y) => {
          const a = c.value(x), b = c.value(y);
          if (a === null || a === undefined) return 1;
          if (b === null || b === undefined) return -1;
          const r = typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b));
          return sort.dir * r;
        });
      }
      const head = el("tr", null, ...cols.map((c, i) => el("th", {
        class: [c.cls, sort.col === i ? (sort.dir > 0 ? "sorted-asc" : "sorted-desc") : ""].join(" ").trim() || null,
        title: c.title || "click to sort",
        onclick: () => {
          sort.dir = sort.col === i ? -sort.dir : (typeof c.value(rows[0] || {}) === "number" ? -1 : 1);
          sort.col = i;
          draw();
        },
      }, c.label, c.sub ? el("span", { class: "sub" }, c.sub) : null)));
      table.replaceChildren(el("thead", null, head), el("tbody", null, ...order.map((r) => el("tr", null, ...cols.map((c) => c.cell(r))))));
    }
    draw();
  }

  /* ---------- leaderboard ---------- */
  const lb = new Map(D.leaderboard.map((r) => [r.system + "\u0000" + r.task, r]));
  const lbCols = D.tasks.map((t) => ({ task: t.name, sub: t.group, group: false }))
    .concat(D.groups.map((g) => ({ task: g, label: g.replace(/^ALL:/, ""), sub: "pooled", group: true })));
  const metrics = [["em", "EM"], ["recall", "Recall@k"], ["f1", "F1"]]
    .filter(([m]) => D.leaderboard.some((r) => r[m] !== null && r[m] !== undefined));
  let metric = "em";
  const lbSort = { col: null, dir: 1 };

  function drawLeaderboard() {
    const best = {};
    for (const c of lbCols) {
      const vs = D.systems.map((s) => (lb.get(s + "\u0000" + c.task) || {})[metric]).filter((v) => v !== null && v !== undefined);
      best[c.task] = vs.length > 1 ? Math.max(...vs) : null;
    }
    const cols = [{ label: "system", value: (s) => s, cell: (s) => el("td", null, s) }].concat(lbCols.map((c) => ({
      label: c.label || c.task, sub: c.sub, cls: c.group ? "group" : null,
      title: c.group ? `${c.task}: pooled over the group's tasks; click to sort` : "click to sort",
      value: (s) => { const r = lb.get(s + "\u0000" + c.task); return r ? r[metric] : null; },
      cell: (s) => {
        const r = lb.get(s + "\u0000" + c.task);
        const v = r ? r[metric] : null;
        const lo = r ? r[metric + "_lo"] : null, hi = r ? r[metric + "_hi"] : null;
        const cls = [c.group ? "group" : "", v !== null && v !== undefined && v === best[c.task] ? "best" : ""].join(" ").trim();
        return el("td", { class: cls || null, title: r ? `n = ${r.n}` : null }, el("span", { class: "v" }, fmt(v)),
          lo !== null && lo !== undefined && hi !== null && hi !== undefined ? el("span", { class: "ci" }, `${fmt(lo)}–${fmt(hi)}`) : null);
      },
    })));
    sortableTable($("leaderboard"), cols, D.systems, lbSort);
  }
  function drawMetricToggle() {
    $("metric-toggle").replaceChildren(...metrics.map(([m, label]) => el("button", {
      type: "button", class: m === metric ? "on" : null, "data-metric": m,
      onclick: () => { metric = m; drawMetricToggle(); drawLeaderboard(); },
    }, label)));
  }

  function drawPaired() {
    if (!D.paired || !D.paired.length) return;
    $("paired-wrap").hidden = false;
    const keys = Object.keys(D.paired[0]);
    const num = new Set(["delta", "lo", "hi"]);
    const cols = keys.map((k) => ({
      label: k, value: (r) => r[k],
      cell: (r) => {
        if (!num.has(k)) return el("td", { class: "left" }, r[k] === null ? "–" : r[k]);
        const sig = r.lo !== null && r.hi !== null && (r.lo > 0 || r.hi < 0);
        return el("td", { class: k === "delta" && sig ? (r.delta > 0 ? "pos" : "neg") : null }, signed(r[k]));
      },
    }));
    sortableTable($("paired"), cols, D.paired, { col: null, dir: 1 });
  }

  /* ---------- example browser ---------- */
  const FILTERS = [
    ["all", "all examples"],
    ["disagree", "disagree on EM (one right, one wrong)"],
    ["a_right", "A right, B wrong"],
    ["b_right", "B right, A wrong"],
    ["retrieval", "retrieval differs (answer in top-k for one only)"],
  ];
  const TEST = {
    all: () => true,
    disagree: (a, b) => a && b && (a[3] > 0) !== (b[3] > 0),
    a_right: (a, b) => a && b && a[3] > 0 && !(b[3] > 0),
    b_right: (a, b) => a && b && b[3] > 0 && !(a[3] > 0),
    retrieval: (a, b) => a && b && a[4] !== null && b[4] !== null && (a[4] > 0) !== (b[4] > 0),
  };
  const taskNames = D.tasks.map((t) => t.name);
  const state = { task: null, a: null, b: null, filter: "all", page: 1 };

  function systemsOf(task) {
    const ex = D.examples[task];
    return ex ? D.systems.filter((s) => ex.sys[s]) : [];
  }
  function readHash() {
    const p = new URLSearchParams(location.hash.replace(/^#/, ""));
    state.task = taskNames.includes(p.get("task")) ? p.get("task") : taskNames[0] || null;
    const sys = systemsOf(state.task);
    const pref = sys.find((s) => /imprag/i.test(s)) || sys[0] || null;
    state.a = sys.includes(p.get("a")) ? p.get("a") : pref;
    state.b = sys.includes(p.get("b")) ? p.get("b")
      : (sys.find((s) => s !== state.a && !/closed-book/i.test(s)) || sys.find((s) => s !== state.a) || state.a);
    state.filter = TEST[p.get("filter")] ? p.get("filter") : "all";
    state.page = Math.max(1, parseInt(p.get("page") || "1", 10) || 1);
  }
  function writeHash() {
    const p = new URLSearchParams({ task: state.task || "", a: state.a || "", b: state.b || "", filter: state.filter, page: String(state.page) });
    history.replaceState(null, "", "#" + p.toString());
  }

  function escapeRe(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }
  function goldRegex(golds) {
    const gs = golds.filter((g) => g && g.trim()).sort((x, y) => y.length - x.length).map(escapeRe);
    return gs.length ? new RegExp(gs.join("|"), "giu") : null;
  }
  /* Text with every case-insensitive occurrence of a gold answer wrapped in <mark>; [fragment, any hit]. */
  function highlight(text, re) {
    const frag = document.createDocumentFragment();
    if (!re || !text) { frag.append(text || ""); return [frag, false]; }
    re.lastIndex = 0;
    let last = 0, hit = false, m;
    while ((m = re.exec(text)) !== null) {
      if (!m[0].length) { re.lastIndex++; continue; }
      frag.append(text.slice(last, m.index), el("mark", null, m[0]));
      last = m.index + m[0].length;
      hit = true;
    }
    frag.append(text.slice(last));
    return [frag, hit];
  }

  function sideView(label, name, rec, prompt, re, other) {
    if (!rec) return el("div", { class: "side" }, el("h4", null, `${label}: ${name}`), el("p", { class: "empty" }, "no prediction for this example"));
    const [q, retrieved, pred, em, recall] = rec;
    const right = em > 0;
    let query;
    if (q === null && !retrieved.length) query = el("span", { class: "empty" }, "none (no retrieval)");
    else if (q === null) query = el("span", { class: "implicit" }, "implicit (no explicit query)");
    else if (q === SAME_AS_PROMPT) query = el("span", null, "the prompt itself");
    else query = el("span", null, q);
    const list = retrieved.length ? el("ol", { class: "passages" }, ...retrieved.map((pi) => {
      const p = D.passages[pi];
      if (p.length < 3) return el("li", null, el("span", { class: "pid" }, p[0]));
      const [frag, hit] = highlight(p[2], re);
      const [tfrag, thit] = highlight(p[1], re);
      return el("li", null, el("details", { open: hit || thit },
        el("summary", null, el("b", null, tfrag), el("span", { class: "pid" }, p[0]),
          hit ? el("span", { class: "hasgold" }, "contains gold") : null,
          other && other.length && !other.includes(pi) ? el("span", { class: "pid" }, `(not in ${label === "A" ? "B" : "A"})`) : null),
        el("p", null, frag)));
    })) : el("p", { class: "empty" }, "no retrieval");
    return el("div", { class: "side " + (right ? "ok" : "bad") },
      el("h4", null, `${label}: ${name}`, el("span", { class: "badge " + (right ? "ok" : "bad") }, `EM ${right ? 1 : 0}`),
        recall === null ? null : el("span", { class: "badge" }, `answer in top-k: ${recall > 0 ? "yes" : "no"}`)),
      el("div", { class: "kv" }, el("span", { class: "k" }, "query"), query),
      el("div", { class: "kv" }, el("span", { class: "k" }, "prediction"), el("span", { class: "pred" }, pred === "" ? "(empty)" : pred)),
      list);
  }

  function exampleView(ex, i) {
    const re = goldRegex(ex.golds[i]);
    const A = ex.sys[state.a][i], B = ex.sys[state.b][i];
    return el("article", { class: "ex", "data-id": ex.ids[i] },
      el("div", { class: "head" }, el("b", null, `#${i + 1}`), el("span", { class: "exid" }, ex.ids[i]),
        el("span", null, el("span", { class: "k muted" }, "gold: "), ...ex.golds[i].map((g) => el("span", { class: "gold" }, g)))),
      el("div", { class: "prompt" }, ex.prompt[i]),
      el("div", { class: "sides" }, sideView("A", state.a, A, ex.prompt[i], re, B && B[1]), sideView("B", state.b, B, ex.prompt[i], re, A && A[1])));
  }

  function pagerView(pages) {
    const go = (p) => { state.page = p; writeHash(); drawExamples(); };
    return [el("button", { type: "button", disabled: state.page <= 1, onclick: () => go(state.page - 1) }, "‹ prev"),
      el("span", null, `page ${state.page} of ${pages}`),
      el("button", { type: "button", disabled: state.page >= pages, onclick: () => go(state.page + 1) }, "next ›")];
  }

  function fillSelect(sel, values, current, labels) {
    sel.replaceChildren(...values.map((v, i) => el("option", { value: v, selected: v === current }, labels ? labels[i] : v)));
    sel.value = current;
  }

  function drawExamples() {
    const ex = D.examples[state.task];
    const sys = systemsOf(state.task);
    fillSelect($("sel-task"), taskNames, state.task, D.tasks.map((t) => `${t.name} (${t.group}, ${t.n})`));
    fillSelect($("sel-a"), sys, state.a);
    fillSelect($("sel-b"), sys, state.b);
    if (!ex || !state.a || !state.b) {
      $("examples").replaceChildren(el("p", { class: "empty" }, "no examples"));
      return;
    }
    const A = ex.sys[state.a], B = ex.sys[state.b];
    const counts = {};
    const shown = [];
    for (const [f] of FILTERS) counts[f] = 0;
    for (let i = 0; i < ex.ids.length; i++) {
      for (const [f] of FILTERS) if (TEST[f](A[i], B[i])) counts[f]++;
      if (TEST[state.filter](A[i], B[i])) shown.push(i);
    }
    fillSelect($("sel-filter"), FILTERS.map(([f]) => f), state.filter, FILTERS.map(([f, l]) => `${l} (${counts[f]})`));
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    state.page = Math.min(state.page, pages);
    const em = (col) => {
      const v = col.filter((r) => r); return v.length ? fmt(100 * v.reduce((s, r) => s + r[3], 0) / v.length) : "–";
    };
    $("ex-summary").replaceChildren(`${state.task}: ${ex.ids.length} examples · EM A (${state.a}) ${em(A)} · EM B (${state.b}) ${em(B)} · `,
      el("b", { id: "shown-count", "data-count": shown.length }, `${shown.length} shown`));
    $("pager-top").replaceChildren(...pagerView(pages));
    $("pager-bottom").replaceChildren(...pagerView(pages));
    const start = (state.page - 1) * PAGE;
    const rows = shown.slice(start, start + PAGE).map((i) => exampleView(ex, i));
    $("examples").replaceChildren(...(rows.length ? rows : [el("p", { class: "empty" }, "no example matches this filter")]));
  }

  function bindControls() {
    $("sel-task").addEventListener("change", (e) => {
      state.task = e.target.value;
      const sys = systemsOf(state.task);
      if (!sys.includes(state.a)) state.a = sys[0] || null;
      if (!sys.includes(state.b)) state.b = sys.find((s) => s !== state.a) || state.a;
      state.page = 1; writeHash(); drawExamples();
    });
    for (const [id, key] of [["sel-a", "a"], ["sel-b", "b"], ["sel-filter", "filter"]]) {
      $(id).addEventListener("change", (e) => { state[key] = e.target.value; state.page = 1; writeHash(); drawExamples(); });
    }
    window.addEventListener("hashchange", () => { readHash(); drawExamples(); });
    for (const b of document.querySelectorAll("#nav button")) {
      b.addEventListener("click", () => $(b.dataset.target).scrollIntoView({ behavior: "smooth" }));
    }
  }

  /* ---------- run facts ---------- */
  function drawFacts() {
    $("command").textContent = D.command;
    $("command-source").textContent = D.command_source === "manifest.json" ? "(manifest.json)" : "(equivalent command, rebuilt from config.json)";
    $("config").textContent = JSON.stringify(D.config, null, 1);
    const rows = Object.entries(D.system_configs).map(([label, c]) => ({ label, ...c }));
    sortableTable($("system-configs"), [
      { label: "label", value: (r) => r.label, cell: (r) => el("td", null, r.label) },
      { label: "system", value: (r) => r.system, cell: (r) => el("td", { class: "left" }, r.system) },
      { label: "spec", value: (r) => r.spec, cell: (r) => el("td", { class: "left" }, el("code", null, r.spec)) },
      { label: "options", value: (r) => JSON.stringify(r.options), cell: (r) => el("td", { class: "left" }, el("code", null, JSON.stringify(r.options))) },
    ], rows, { col: null, dir: 1 });
    if (D.manifest !== null && D.manifest !== undefined) {
      $("manifest-wrap").hidden = false;
      $("manifest").textContent = JSON.stringify(D.manifest, null, 1);
    }
    $("passage-note").textContent = D.passage_texts
      ? `${D.passages.length} distinct retrieved passages included once each (corpus: ${D.config.corpus}).`
      : `${D.passages.length} distinct retrieved passage ids; passage texts not included.`;
  }

  $("title").textContent = `imprag-bench report · ${D.title} · ${D.systems.length} systems × ${D.tasks.length} tasks`;
  drawMetricToggle();
  drawLeaderboard();
  drawPaired();
  readHash();
  bindControls();
  drawExamples();
  drawFacts();
  document.documentElement.setAttribute("data-render-ms", performance.now().toFixed(1));
  document.documentElement.setAttribute("data-ready", "1");
})();
