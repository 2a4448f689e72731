// reprun's web view: a read-only page over the API of `reprun ui`.
// Every value from the store reaches the page as text (textContent, createElement); no HTML is
// ever built from data. The state of each page lives in the URL's hash, so a link can be shared.
"use strict";

const BASE_COLUMNS = ["status", "started", "duration", "project", "entry_point"];
const POLL_MS = 2000;
const LOG_POLL_MS = 1000;
let pageToken = 0; // changes when the page changes: timers of the old page stop

// -- small helpers -------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "onclick" || key === "onchange" || key === "oninput" || key === "onkeydown") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function main() { return document.getElementById("main"); }

function show(...nodes) {
  const m = main();
  m.replaceChildren(...nodes);
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, params) {
  const query = params ? "?" + new URLSearchParams(params).toString() : "";
  const response = await fetch("/api/" + path + query, { credentials: "same-origin" });
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new ApiError(response.status, message);
  }
  return response;
}

async function apiJson(path, params) { return (await api(path, params)).json(); }

function errorBox(err) { return el("p", { class: "error", role: "alert", text: err.message || String(err) }); }

// A link out of the page only for an http(s) address (a record is data: no javascript: URL).
function externalLink(url, id) {
  let parsed = null;
  try { parsed = new URL(url); } catch (e) { /* not an address: shown as text */ }
  if (!parsed || !["http:", "https:"].includes(parsed.protocol)) return el("span", { id, text: url });
  return el("a", { id, href: parsed.href, text: url, target: "_blank", rel: "noopener noreferrer" });
}

function runLink(id, label) { return el("a", { href: "#/run/" + encodeURIComponent(id), class: "run-link", text: label || id.slice(0, 12) }); }

function statusCell(status) { return el("span", { class: "status-" + status, text: status }); }

function fmt(value) {
  if (value === null || value === undefined) return "-";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(6).replace(/\.?0+$/, "").replace(/\.?0+e/, "e");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function when(iso) { return iso ? iso.slice(0, 19).replace("T", " ") : "-"; }

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 60) return seconds.toFixed(2) + " s";
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  return m < 60 ? `${m} min ${s} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function kv(rows) {
  return el("table", { class: "kv" }, rows.filter(r => r[1] !== null && r[1] !== undefined && r[1] !== "")
    .map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", {}, v instanceof Node ? v : String(v)))));
}

function hashState() {
  const raw = location.hash.replace(/^#/, "") || "/runs";
  const [path, query] = raw.split("?");
  return { path, params: new URLSearchParams(query || "") };
}

function setHash(path, params, replace) {
  const clean = new URLSearchParams();
  for (const [k, v] of params) if (v !== "" && v !== null && v !== undefined) clean.set(k, v);
  const text = "#" + path + (clean.toString() ? "?" + clean.toString() : "");
  if (replace) history.replaceState(null, "", text); else location.hash = text;
}

function plotly() {
  if (!window.Plotly) throw new Error("Plotly did not load (install reprun[ui])");
  return window.Plotly;
}

function plotDiv(id) { return el("div", { class: "plot", id }); }

// Plotly reads a few HTML tags in its labels (<b>, <br>, <a href>): every label from the store is
// given as escaped text, so that it is shown as it is.
function plotText(value) {
  return typeof value === "string" ? value.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;") : value;
}

function newPlot(node, traces, layout) {
  const base = { margin: { t: 30, r: 20, b: 50, l: 60 }, font: { size: 12 }, hovermode: "closest" };
  return plotly().newPlot(node, traces, Object.assign(base, layout || {}), { displaylogo: false, responsive: true });
}

// -- the runs table ------------------------------------------------------------------------

async function runsPage(token, params) {
  const where = params.get("where") || "";
  const sort = params.get("sort") || "";
  const limit = Number(params.get("limit") || "1000");
  const selected = new Set((params.get("sel") || "").split(",").filter(Boolean));
  let fields = { params: [], metrics: [] };
  try { fields = await apiJson("fields"); } catch (e) { /* shown by the table's own error */ }
  let chosen = params.get("cols");
  if (chosen === null) chosen = await sweepColumns(where, fields);
  if (token !== pageToken) return; // another page was opened meanwhile: leave it alone
  if (chosen === null) chosen = await shownColumns(where, limit);
  if (token !== pageToken) return;
  const extra = chosen.split(",").map(s => s.trim()).filter(Boolean);
  const columns = [...BASE_COLUMNS, ...extra.filter(c => !BASE_COLUMNS.includes(c))];
  const state = () => new URLSearchParams({ where, sort, cols: chosen, sel: [...selected].join(","), limit: limit === 1000 ? "" : String(limit) });

  const whereInput = el("input", { type: "text", id: "where", placeholder: "filter, e.g. metrics.rmse < 0.8 and params.alpha >= 0.2", value: where, list: "field-names" });
  const colsInput = el("input", { type: "text", id: "columns", placeholder: "columns: params.NAME, metrics.NAME", value: chosen, list: "field-names" });
  const datalist = el("datalist", { id: "field-names" }, [...fields.params.map(n => "params." + n), ...fields.metrics.map(n => "metrics." + n)].map(n => el("option", { value: n })));
  const apply = () => {
    const p = state(); p.set("where", whereInput.value.trim()); p.set("cols", colsInput.value.trim()); p.delete("limit");
    setHash("/runs", p);
  };
  const onEnter = e => { if (e.key === "Enter") apply(); };
  whereInput.addEventListener("keydown", onEnter);
  colsInput.addEventListener("keydown", onEnter);
  const compareButton = el("button", { id: "compare", onclick: () => setHash("/compare", new URLSearchParams({ runs: [...selected].join(",") })) }, "Compare selected");
  const plotButton = el("button", { id: "plot-selected", onclick: () => setHash("/plots", new URLSearchParams({ runs: [...selected].join(","), where })) }, "Plot selected");
  const csvParams = new URLSearchParams({ columns: columns.join(",") });
  if (where) csvParams.set("where", where);
  if (sort) csvParams.set("sort", sort);
  const csv = el("a", { class: "button", id: "csv", href: "/api/runs.csv?" + csvParams.toString(), download: "runs.csv" }, "CSV");
  const count = el("span", { class: "muted", id: "count" });
  const refreshButtons = () => {
    compareButton.disabled = selected.size < 2;
    plotButton.disabled = selected.size < 1;
    count.textContent = `${selected.size} selected`;
  };
  refreshButtons();
  const tableHolder = el("div", { id: "runs-table" }, el("p", { class: "muted", text: "Loading runs…" }));
  show(el("h1", { text: "Runs" }),
    el("div", { class: "toolbar" }, whereInput, el("button", { id: "apply", onclick: apply }, "Filter"),
      colsInput, datalist),
    el("div", { class: "toolbar" }, compareButton, plotButton, csv, count,
      where ? el("a", { href: "#/plots?" + new URLSearchParams({ where }).toString(), id: "plot-filter" }, "Plot these runs") : null),
    tableHolder);

  const load = async () => {
    const query = { columns: columns.join(","), limit: String(limit) };
    if (where) query.where = where;
    if (sort) query.sort = sort;
    let rows;
    try { rows = await apiJson("runs", query); } catch (err) { tableHolder.replaceChildren(errorBox(err)); return; }
    if (token !== pageToken) return;
    tableHolder.replaceChildren(runsTable(rows, columns, sort, selected, refreshButtons, state));
    if (rows.length >= limit) tableHolder.append(el("p", {}, el("button", { id: "more", onclick: () => { const p = state(); p.set("limit", String(limit * 2)); setHash("/runs", p); } }, `Show more than ${limit}`)));
    const t = performance.now();
    document.body.dataset.rendered = String(t);
    if (window.__firstRender === undefined) window.__firstRender = t;
  };
  const stamp = await stampNow();
  await load();
  watchStore(token, load, stamp);
}

// A table filtered by one sweep (`sweep = ID`) shows by default the trial, the swept parameters
// and the sweep's metric first, then the other metrics.
const SWEEP_FILTER = /^\s*sweep\s*=\s*(['"]?)(s[0-9a-f]{3,11})\1\s*$/;
async function sweepColumns(where, fields) {
  const match = SWEEP_FILTER.exec(where);
  if (!match) return null;
  let sweep;
  try { sweep = await apiJson("sweeps/" + encodeURIComponent(match[2])); } catch (e) { return null; }
  const swept = [...new Set(sweep.trials.flatMap(t => Object.keys(t.params || {})))];
  const metric = sweep.spec.metric;
  let reported = fields.metrics; // the metrics the sweep's runs reported, else the store's
  try { reported = [...new Set((await apiJson("runs", { where, limit: "1000" })).flatMap(r => Object.keys(r.metrics || {})))].sort(); } catch (e) { /* the table shows the error */ }
  const metrics = [...(metric ? [metric] : []), ...reported.filter(n => n !== metric)].slice(0, 4);
  return ["trial", ...swept.map(n => "params." + n), ...metrics.map(n => "metrics." + n)].join(",");
}

// By default the table shows the metrics of the runs shown, then the parameters that vary among
// them (a parameter the same in every run that has it says nothing about a difference).
async function shownColumns(where, limit) {
  let rows;
  try { rows = await apiJson("runs", where ? { where, limit: String(limit) } : { limit: String(limit) }); } catch (e) { return ""; }
  const names = key => [...new Set(rows.flatMap(r => Object.keys(r[key] || {})))].sort();
  const metrics = names("metrics").slice(0, 4).map(n => "metrics." + n);
  const params = varyingParams(rows, names("params")).slice(0, 4).map(n => "params." + n);
  return [...metrics, ...params].join(",");
}

function varyingParams(rows, paramNames) {
  return paramNames.filter(n => new Set(rows.map(r => (r.params || {})[n]).filter(v => v !== undefined).map(String)).size > 1);
}

// The runs of one sweep are plotted by default against the sweep's metric, if they reported it.
async function sweepMetric(where, metricNames) {
  const match = SWEEP_FILTER.exec(where);
  if (!match) return null;
  try {
    const metric = (await apiJson("sweeps/" + encodeURIComponent(match[2]))).spec.metric;
    return metricNames.includes(metric) ? metric : null;
  } catch (e) { return null; }
}

function runsTable(rows, columns, sort, selected, refreshButtons, state) {
  const extra = columns.filter(c => !BASE_COLUMNS.includes(c));
  const [sortField, descending] = sort ? [sort.replace(/^-/, ""), sort.startsWith("-")] : [null, false];
  const header = el("tr", {}, el("th", {}, ""), el("th", { text: "run" }), columns.map(c => {
    const cls = "sortable" + (c === sortField ? (descending ? " sorted-desc" : " sorted-asc") : "");
    return el("th", { class: cls, "data-field": c, title: "sort by " + c, onclick: () => {
      const p = state();
      p.set("sort", c === sortField && !descending ? "-" + c : c);
      setHash("/runs", p);
    } }, c);
  }));
  const body = document.createElement("tbody");
  const fragment = document.createDocumentFragment();
  for (const row of rows) {
    const box = el("input", { type: "checkbox", class: "select", "data-run": row.run_id, "aria-label": "select run " + row.run_id.slice(0, 12) });
    box.checked = selected.has(row.run_id);
    box.addEventListener("change", () => {
      if (box.checked) selected.add(row.run_id); else selected.delete(row.run_id);
      history.replaceState(null, "", "#/runs?" + state().toString());
      refreshButtons();
    });
    const tr = el("tr", { "data-run": row.run_id }, el("td", {}, box), el("td", {}, runLink(row.run_id)));
    for (const c of columns) {
      const value = row[c];
      let cell;
      if (c === "status") cell = el("td", {}, statusCell(value));
      else if (c === "started") cell = el("td", { text: when(value) });
      else if (c === "duration") cell = el("td", { class: "num", text: duration(value) });
      else if (c === "sweep" && typeof value === "string") cell = el("td", {}, el("a", { class: "sweep-link", href: "#/sweeps/" + encodeURIComponent(value), text: value.slice(0, 12) }));
      else cell = el("td", { class: typeof value === "number" ? "num" : null, text: fmt(value) });
      cell.dataset.field = c;
      tr.append(cell);
    }
    fragment.append(tr);
  }
  body.append(fragment);
  const table = el("table", { class: "grid", id: "runs" }, el("thead", {}, header));
  table.append(body);
  return rows.length ? table : el("div", {}, table, el("p", { class: "muted", id: "empty", text: "No run matches." }));
}

async function stampNow() {
  try { return (await apiJson("changes")).stamp; } catch (e) { return null; }
}

// Poll the store's change stamp (taken before the page read its data) and call reload when it
// moves: new runs, and runs that end, appear without a reload of the page.
function watchStore(token, reload, stamp) {
  const live = document.getElementById("live");
  let seen = stamp;
  const tick = async () => {
    if (token !== pageToken) return;
    try {
      const now = (await apiJson("changes")).stamp;
      live.textContent = "live";
      if (now !== seen) { seen = now; await reload(); }
    } catch (e) { live.textContent = "server unreachable"; }
    if (token === pageToken) setTimeout(tick, POLL_MS);
  };
  setTimeout(tick, POLL_MS);
}

// -- one run -------------------------------------------------------------------------------

async function runPage(token, id) {
  const stamp = await stampNow();
  let record;
  try { record = await apiJson("runs/" + encodeURIComponent(id)); } catch (err) { if (token === pageToken) show(el("h1", { text: "Run" }), errorBox(err)); return; }
  if (token !== pageToken) return;
  const src = record.source || {}, env = record.environment || {};
  const title = el("h1", {}, "Run ", el("code", { id: "run-id", text: record.run_id }), " ", statusCell(record.status));
  const sections = [title];
  sections.push(kv([
    ["project", `${record.project.name} (${record.project.uri})`], ["entry point", record.entry_point],
    ["started", when(record.started_at)], ["duration", duration(record.duration_s)],
    ["exit code", record.exit_code], ["reason", record.reason],
    ["reproduces", record.reproduces ? runLink(record.reproduces) : null],
    ["reused from", record.reused_from ? runLink(record.reused_from) : null],
    ["backend", record.backend ? record.backend.name : null],
    ["host", record.host ? `${record.host.hostname} (${record.host.os} ${record.host.architecture})` : null],
    ["sweep", sweepLink(record)],
    ["parent", record.parent ? el("span", { id: "parent" }, runLink(record.parent)) : null],
    ["mlflow", record.mlflow && record.mlflow.run_url ? externalLink(record.mlflow.run_url, "mlflow-link") : null],
  ]));
  if (record.kind === "pipeline") {
    const holder = el("div", { id: "pipeline" }, el("p", { class: "muted", text: "Loading the pipeline…" }));
    sections.push(holder);
    pipelineSection(token, record.run_id, holder);
  }
  sections.push(el("p", {}, el("a", { class: "button", href: "#/compare?runs=" + encodeURIComponent(record.run_id), id: "compare-with" }, "Compare with…"),
    " ", el("a", { class: "button", href: "#/runs?where=" + encodeURIComponent(`entry_point = '${record.entry_point}'`) }, "Runs of this entry point")));

  sections.push(el("h2", { text: "Source" }), kv([
    ["uri", src.uri], ["subdirectory", src.subdirectory], ["version asked", src.requested_version],
    ["commit", src.resolved_commit || src.git_commit], ["branch", src.git_branch], ["remote", src.git_remote],
    ["uncommitted changes", src.git_dirty === null || src.git_dirty === undefined ? null : (src.git_dirty ? "yes (patch below)" : "none")],
    ["snapshot", src.snapshot ? `${src.snapshot.files} files, ${src.snapshot.size} bytes` : null],
  ]));
  const patchHolder = el("div", { id: "patch" });
  sections.push(patchHolder);

  sections.push(el("h2", { text: "Command" }), el("pre", { id: "command", text: record.command }));
  const params = Object.entries(record.parameters || {});
  sections.push(el("h2", { text: "Parameters" }), params.length
    ? el("table", { class: "grid", id: "parameters" }, el("tr", {}, el("th", { text: "name" }), el("th", { text: "value" })),
      params.map(([k, v]) => el("tr", { "data-name": k }, el("td", { text: k }), el("td", { class: "param-value", text: v }))))
    : el("p", { class: "muted", text: "none" }));

  sections.push(el("h2", { text: "Environment" }), kv([
    ["kind", env.kind], ["manager", env.manager], ["python", env.python_version],
    ["lock", env.lock_file ? `${env.lock_file} (sha256 ${String(env.lock_sha256 || "").slice(0, 12)})` : null],
    ["image", record.backend && record.backend.docker ? `${record.backend.docker.image} (${record.backend.docker.image_id || "-"})` : null],
  ]));
  const packages = env.packages || [];
  if (packages.length) sections.push(el("details", {}, el("summary", { text: `${packages.length} packages` }),
    el("table", { class: "grid", id: "packages" }, packages.map(p => el("tr", {}, el("td", { text: p.name }), el("td", { text: p.version }))))));
  const lockHolder = el("div", { id: "lock" });
  sections.push(lockHolder);

  sections.push(el("h2", { text: "Inputs" }), inputsTable(record.inputs || []));
  const downHolder = el("div", { id: "downstream" });
  const modelsHolder = el("div", { id: "models-of-run" });
  sections.push(el("h2", { text: "Outputs" }), (record.outputs || []).length
    ? el("table", { class: "grid", id: "outputs" }, el("tr", {}, ["path", "size", "digest"].map(h => el("th", { text: h }))),
      record.outputs.map(o => el("tr", {}, el("td", { text: o.path }), el("td", { class: "num", text: o.size }), el("td", {}, el("code", { text: String(o.digest || o.sha256 || "").slice(0, 30) })))))
    : el("p", { class: "muted", text: "none" }), el("p", { class: "muted", text: "in " + record.output_dir }), downHolder, modelsHolder);

  const metrics = Object.entries(record.metrics || {});
  const metricPlot = plotDiv("metric-plot");
  sections.push(el("h2", { text: "Metrics" }), metrics.length
    ? el("table", { class: "grid", id: "metrics" }, el("tr", {}, ["name", "last", "step", "min", "max", "count"].map(h => el("th", { text: h }))),
      metrics.map(([name, m]) => el("tr", {}, el("td", { text: name }), el("td", { class: "num", text: fmt(m.last) }), el("td", { class: "num", text: fmt(m.step) }),
        el("td", { class: "num", text: fmt(m.min) }), el("td", { class: "num", text: fmt(m.max) }), el("td", { class: "num", text: m.count }))))
    : el("p", { class: "muted", text: "none reported" }), metrics.length ? metricPlot : null);

  const log = el("pre", { id: "log" });
  const logNote = el("p", { class: "muted", id: "log-note" });
  sections.push(el("h2", { text: "Log" }), logNote, log);
  show(...sections);

  if (src.patch_file) textFile(record.run_id, "patch", patchHolder, "Uncommitted changes (patch)", true);
  if (env.lock_file) textFile(record.run_id, "lock", lockHolder, "Lock file", false);
  downstream(record.run_id, downHolder);
  runModels(record.run_id, modelsHolder);
  if (metrics.length) metricHistory(record.run_id, metricPlot);
  if (record.kind === "pipeline") logNote.textContent = "a pipeline run: each step's run has its own log";
  else followLog(token, record.run_id, log, logNote);
  if (record.status === "RUNNING") watchStore(token, async () => { if (token === pageToken) { const t = ++pageToken; await runPage(t, id); } }, stamp);
}

function sweepLink(record) {
  const sweep = record.sweep;
  if (!sweep || typeof sweep !== "object" || typeof sweep.id !== "string") return null;
  return el("span", {}, el("a", { id: "this-sweep", href: "#/sweeps/" + encodeURIComponent(sweep.id) }, "sweep " + sweep.id),
    ` trial ${fmt(sweep.trial)} · `,
    el("a", { href: "#/runs?" + new URLSearchParams({ where: sweepWhere(sweep.id) }).toString() }, "its runs"));
}

function sweepWhere(id) { return `sweep = '${id}'`; }

function inputsTable(inputs) {
  if (!inputs.length) return el("p", { class: "muted", text: "none" });
  return el("table", { class: "grid", id: "inputs" }, el("tr", {}, ["name", "path", "kind", "size", "digest", "made by"].map(h => el("th", { text: h }))),
    inputs.map(i => el("tr", {}, el("td", { text: i.name }), el("td", { text: i.path }), el("td", { text: `${i.kind}, ${i.type}` }),
      el("td", { class: "num", text: i.size }), el("td", {}, el("code", { text: String(i.digest || "missing").slice(0, 30) })),
      el("td", { class: "lineage" }, (i.produced_by || []).map(p => el("div", {}, runLink(p.run_id, p.run_id.slice(0, 8)), ` ${p.path}${p.file ? " (" + p.file + ")" : ""}`))))));
}

async function downstream(id, holder) {
  let tree;
  try { tree = await apiJson(`runs/${encodeURIComponent(id)}/lineage`, { down: "1" }); } catch (err) { holder.replaceChildren(errorBox(err)); return; }
  if (!tree.children.length) return;
  holder.replaceChildren(el("p", {}, "Read later by: "), el("ul", { id: "consumers" }, tree.children.map(c => el("li", {}, runLink(c.run_id), ` ${c.label} — ${c.via}`))));
}

async function textFile(id, which, holder, title, isDiff) {
  let text;
  try { text = await (await api(`runs/${encodeURIComponent(id)}/${which}`)).text(); } catch (err) { holder.replaceChildren(errorBox(err)); return; }
  const pre = el("pre", { class: isDiff ? "diff" : "" });
  if (isDiff) {
    for (const line of text.split("\n")) {
      const cls = line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : line.startsWith("@@") ? "hunk" : null;
      pre.append(cls ? el("span", { class: cls, text: line }) : document.createTextNode(line + "\n"));
    }
  } else pre.textContent = text;
  holder.replaceChildren(el("details", { open: isDiff }, el("summary", { text: title }), pre));
}

async function metricHistory(id, node) {
  let series;
  try { series = await apiJson(`runs/${encodeURIComponent(id)}/history`); } catch (err) { node.replaceWith(errorBox(err)); return; }
  const entries = Object.entries(series);
  const single = entries.filter(([, s]) => s.step.length === 1); // a value, not a curve: shown as text
  const traces = entries.filter(([, s]) => s.step.length > 1).map(([name, s]) => ({ type: "scatter", mode: "lines+markers", name: plotText(name), x: s.step, y: s.value }));
  if (!entries.length) { node.replaceWith(el("p", { class: "muted", text: "no history kept" })); return; }
  if (single.length) node.before(el("p", { class: "muted", id: "metric-values", text: single.map(([name, s]) => `${name} = ${fmt(s.value[0])}`).join("; ") + " (one value each: nothing to draw)" }));
  if (!traces.length) { node.remove(); return; }
  await newPlot(node, traces, { xaxis: { title: { text: "step" } }, yaxis: { title: { text: "value" } }, height: 360 });
  node.dataset.ready = "1";
}

// The log from a byte offset, again and again while the run is running (bytes are counted as
// sent, and decoded as a stream: a character split between two answers is kept whole).
async function followLog(token, id, pre, note) {
  let offset = 0;
  const decoder = new TextDecoder("utf-8");
  const tick = async () => {
    if (token !== pageToken) return;
    let response;
    try { response = await api(`runs/${encodeURIComponent(id)}/log`, { offset: String(offset) }); } catch (err) {
      note.textContent = err.status === 404 ? "no log" : err.message; return;
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    const size = Number(response.headers.get("X-File-Size"));
    const status = response.headers.get("X-Run-Status");
    const text = decoder.decode(bytes, { stream: true });
    if (text) { pre.append(document.createTextNode(text)); pre.scrollTop = pre.scrollHeight; }
    offset += bytes.length;
    if (offset < size) { setTimeout(tick, 0); return; }
    if (status === "RUNNING") { note.textContent = "following the log while the run is running…"; setTimeout(tick, LOG_POLL_MS); }
    else note.textContent = `${size} bytes`;
  };
  await tick();
}

// -- compare -------------------------------------------------------------------------------

async function comparePage(token, params) {
  const ids = (params.get("runs") || "").split(",").filter(Boolean);
  const picker = el("input", { type: "text", id: "compare-runs", value: ids.join(","), placeholder: "run ids, comma-separated" });
  const go = () => setHash("/compare", new URLSearchParams({ runs: picker.value.replace(/\s+/g, "") }));
  picker.addEventListener("keydown", e => { if (e.key === "Enter") go(); });
  const head = [el("h1", { text: "Compare runs" }), el("div", { class: "toolbar" }, picker, el("button", { onclick: go }, "Compare"))];
  if (ids.length < 2) { show(...head, el("p", { class: "muted", text: "Select two or more runs in the runs table, or give their ids." })); return; }
  let result;
  try { result = await apiJson("compare", { runs: ids.join(",") }); } catch (err) { if (token === pageToken) show(...head, errorBox(err)); return; }
  if (token !== pageToken) return;
  const runs = result.runs;
  const table = el("table", { class: "grid", id: "compare-table" },
    el("tr", {}, el("th", { text: "" }), runs.map(r => el("th", {}, runLink(r.run_id)))),
    el("tr", {}, el("td", { text: "status" }), runs.map(r => el("td", {}, statusCell(r.status)))),
    el("tr", {}, el("td", { text: "entry point" }), runs.map(r => el("td", { text: `${r.project} / ${r.entry_point}` }))),
    el("tr", {}, el("td", { text: "started" }), runs.map(r => el("td", { text: when(r.started_at) }))),
    result.rows.map(row => el("tr", { class: row.same ? "" : "differs", "data-field": row.field },
      el("td", { text: row.field + (row.better ? ` (${row.better})` : "") }),
      row.values.map((v, i) => el("td", { class: row.best.includes(i) && !row.same ? "best num" : (typeof v === "number" ? "num" : "") , text: fmt(v) })))));
  const diffs = el("div", { id: "diffs" });
  const metricNames = result.rows.filter(r => r.field.startsWith("metrics.")).map(r => r.field.slice(8));
  const plotLink = el("a", { class: "button", href: "#/plots?" + new URLSearchParams({ runs: ids.join(","), metric: metricNames[0] || "" }).toString() }, "Plot their metrics");
  show(...head, el("p", {}, plotLink), el("p", { class: "muted", text: "Highlighted rows differ; the best value of a metric is in bold." }), table,
    el("h2", { text: "What differs from the first run" }), diffs);
  for (const other of runs.slice(1)) {
    let d;
    try { d = await apiJson("diff", { runs: `${runs[0].run_id},${other.run_id}` }); } catch (err) { diffs.append(errorBox(err)); continue; }
    if (token !== pageToken) return;
    diffs.append(diffView(d));
  }
}

function diffView(d) {
  const box = el("div", { class: "diff-view", "data-b": d.runs.b });
  box.append(el("h2", {}, runLink(d.runs.a), " → ", runLink(d.runs.b)));
  const pairRows = [["commit", d.code.commit], ["patch", d.code.patch_sha256], ["snapshot", d.code.snapshot_sha256], ["entry point", d.entry_point],
    ["command", d.command], ["python", d.environment.python], ["lock", d.environment.lock_sha256], ["backend", d.backend.name],
    ["status", d.status], ["exit code", d.exit_code], ["duration", d.duration_s]].filter(([, p]) => p && !p.same);
  const rows = pairRows.map(([k, p]) => el("tr", { class: "differs" }, el("td", { text: k }), el("td", { text: fmt(p.a) }), el("td", { text: fmt(p.b) })));
  const files = d.code.files;
  rows.push(el("tr", { class: files && files.length ? "differs" : "" }, el("td", { text: "code files" }),
    el("td", { colspan: 2, class: "code-files", text: files ? (files.length ? files.join(", ") : "none differ") : (d.code.note || "-") })));
  const mapping = (title, m) => {
    const out = [];
    for (const [k, [a, b]] of Object.entries(m.changed)) out.push(el("tr", { class: "differs" }, el("td", { text: `${title} ${k}` }), el("td", { text: fmt(a) }), el("td", { text: fmt(b) })));
    for (const [k, v] of Object.entries(m.added)) out.push(el("tr", { class: "differs" }, el("td", { text: `${title} ${k}` }), el("td", { text: "-" }), el("td", { text: fmt(v) })));
    for (const [k, v] of Object.entries(m.removed)) out.push(el("tr", { class: "differs" }, el("td", { text: `${title} ${k}` }), el("td", { text: fmt(v) }), el("td", { text: "-" })));
    out.push(el("tr", {}, el("td", { text: title }), el("td", { colspan: 2, class: "muted", text: `${m.same} the same` })));
    return out;
  };
  rows.push(...mapping("parameter", d.parameters), ...mapping("package", d.environment.packages), ...mapping("input", d.inputs), ...mapping("metric", d.metrics));
  const o = d.outputs;
  for (const p of o.changed) rows.push(el("tr", { class: "differs" }, el("td", { text: "output " + p }), el("td", { text: "differs" }), el("td", { text: "differs" })));
  for (const p of o.only_a) rows.push(el("tr", { class: "differs" }, el("td", { text: "output " + p }), el("td", { text: "present" }), el("td", { text: "-" })));
  for (const p of o.only_b) rows.push(el("tr", { class: "differs" }, el("td", { text: "output " + p }), el("td", { text: "-" }), el("td", { text: "present" })));
  rows.push(el("tr", {}, el("td", { text: "outputs" }), el("td", { colspan: 2, class: "muted", text: `${o.same} the same` })));
  box.append(el("table", { class: "grid" }, el("tr", {}, el("th", { text: "" }), el("th", { text: "A" }), el("th", { text: "B" })), rows));
  return box;
}

// -- plots ---------------------------------------------------------------------------------

// The plots of the runs a filter selects (all runs without one): their parameters and metrics
// come with each run (runs list --json), so the choices offered are those of these runs, and the
// parameters that vary among them are the default axes (a sweep's, for a sweep).
async function plotsPage(token, params) {
  const ids = (params.get("runs") || "").split(",").filter(Boolean);
  const where = params.get("where") || "";
  const update = (key, value) => { const p = new URLSearchParams(params); p.set(key, value); setHash("/plots", p); };
  const whereInput = el("input", { type: "text", id: "plot-where", value: where, placeholder: "which runs (the --where language); empty: all" });
  whereInput.addEventListener("keydown", e => { if (e.key === "Enter") update("where", whereInput.value.trim()); });
  const head = [el("h1", { text: "Plots" }), el("div", { class: "toolbar" }, "runs: ", whereInput,
    el("button", { id: "plot-apply", onclick: () => update("where", whereInput.value.trim()) }, "Apply"))];
  let rows;
  try { rows = await apiJson("runs", where ? { where, limit: "10000" } : { limit: "10000" }); } catch (err) { if (token === pageToken) show(...head, errorBox(err)); return; }
  if (token !== pageToken) return;
  if (ids.length) rows = rows.filter(r => ids.includes(r.run_id)); // the selection, and only it
  const names = key => [...new Set(rows.flatMap(r => Object.keys(r[key] || {})))].sort();
  const paramNames = names("params"), metricNames = names("metrics");
  const varying = varyingParams(rows, paramNames);
  const metric = params.get("metric") || await sweepMetric(where, metricNames) || metricNames[0] || "";
  if (token !== pageToken) return;
  const x = params.get("x") || (varying[0] || paramNames[0] ? "params." + (varying[0] || paramNames[0]) : "");
  const dims = (params.get("dims") || varying.slice(0, 8).map(n => "params." + n).join(",")).split(",").filter(Boolean);
  const value = (r, field) => {
    const [kind, ...rest] = field.split(".");
    const bag = r[kind === "params" ? "params" : "metrics"] || {};
    const v = bag[rest.join(".")];
    return v === undefined ? null : v;
  };
  const select = (id, chosen, options, key) => {
    const s = el("select", { id, onchange: () => update(key, s.value) }, options.map(o => el("option", { value: o, text: o })));
    s.value = chosen; return s;
  };
  const dimsInput = el("input", { type: "text", id: "plot-dims", value: dims.join(","), list: "param-names" });
  dimsInput.addEventListener("keydown", e => { if (e.key === "Enter") update("dims", dimsInput.value.trim()); });
  const stepsDiv = plotDiv("steps-plot"), scatterDiv = plotDiv("scatter-plot"), parDiv = plotDiv("parcoords-plot");
  head[1].append("metric: ", select("plot-metric", metric, metricNames, "metric"), el("span", { class: "muted", text: `${rows.length} runs` }));
  show(...head,
    el("h2", { text: `${metric || "A metric"} over steps` + (ids.length ? ` (${ids.length} selected runs)` : "") }),
    ids.length ? stepsDiv : el("p", { class: "muted", text: "Select runs in the table and press “Plot selected”." }),
    el("h2", {}, `${metric} against `, select("plot-x", x, paramNames.map(n => "params." + n), "x")), scatterDiv,
    el("h2", { text: "Parallel coordinates" }),
    el("div", { class: "toolbar" }, "parameters: ", dimsInput,
      el("datalist", { id: "param-names" }, paramNames.map(n => el("option", { value: "params." + n })))),
    parDiv);
  if (!metric) { scatterDiv.replaceWith(el("p", { class: "muted", text: "None of these runs reported a metric." })); parDiv.remove(); return; }
  if (ids.length) stepsPlot(ids, metric, stepsDiv);
  const m = "metrics." + metric;
  const usable = rows.filter(r => typeof value(r, m) === "number");
  if (x) {
    await newPlot(scatterDiv, [{ type: "scatter", mode: "markers", x: usable.map(r => asAxis(value(r, x))), y: usable.map(r => value(r, m)),
      text: usable.map(r => r.run_id.slice(0, 12)), customdata: usable.map(r => r.run_id), marker: { size: 9 } }],
    { xaxis: { title: { text: plotText(x) } }, yaxis: { title: { text: plotText(m) } }, height: 380 });
    scatterDiv.on("plotly_click", ev => { const p = ev.points[0]; if (p && p.customdata) location.hash = "#/run/" + p.customdata; });
    scatterDiv.dataset.ready = String(usable.length);
  }
  if (dims.length) {
    const axes = [...dims.map(d => axis(d, usable.map(r => value(r, d)))), axis(m, usable.map(r => value(r, m)))];
    parDiv.replaceChildren(parallelCoordinates(axes, usable.map(r => r.run_id), axes.length - 1));
    parDiv.dataset.ready = String(usable.length);
    if (params.get("kind") === "parcoords") parDiv.scrollIntoView();
  } else parDiv.replaceChildren(el("p", { class: "muted", text: "No parameter varies among these runs." }));
}

// Parallel coordinates drawn as SVG by this page (Plotly's are WebGL, whose code generation
// the page's Content-Security-Policy forbids): an axis per dimension, a line per run coloured
// by the metric (the last axis); a line links to its run, its title names the values.
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function colour(t) { // a perceptual ramp from dark blue to yellow (as viridis)
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function parallelCoordinates(axes, ids, colourAxis) {
  const width = 1100, height = 380, top = 40, bottom = 30, left = 80, right = 80;
  const step = axes.length > 1 ? (width - left - right) / (axes.length - 1) : 0;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", class: "parcoords", role: "img" });
  const y = (a, v) => {
    if (v === null || Number.isNaN(v)) return null;
    const span = a.max - a.min || 1;
    return top + (height - top - bottom) * (1 - (v - a.min) / span);
  };
  const c = axes[colourAxis];
  ids.forEach((id, row) => {
    const points = axes.map((a, i) => [left + i * step, y(a, a.values[row])]).filter(p => p[1] !== null);
    if (points.length < 2) return;
    const t = c.max > c.min ? (c.values[row] - c.min) / (c.max - c.min) : 0.5;
    const line = svg("polyline", { points: points.map(p => p.join(",")).join(" "), fill: "none", stroke: colour(t), "stroke-width": 2, "stroke-opacity": 0.8, class: "pc-line", "data-run": id },
      svg("title", {}, id.slice(0, 12) + "\n" + axes.map(a => `${a.label}: ${a.shown[row]}`).join("\n")));
    line.addEventListener("click", () => { location.hash = "#/run/" + id; });
    root.append(line);
  });
  axes.forEach((a, i) => {
    const x = left + i * step;
    const g = svg("g", { class: "pc-axis" }, svg("line", { x1: x, x2: x, y1: top, y2: height - bottom, stroke: "#344054" }),
      svg("text", { x, y: top - 16, "text-anchor": "middle", class: "axis-title" }, a.label));
    for (const [value, label] of a.ticks) {
      const ty = y(a, value);
      g.append(svg("line", { x1: x - 4, x2: x, y1: ty, y2: ty, stroke: "#344054" }),
        svg("text", { x: x - 7, y: ty + 4, "text-anchor": "end", class: "tick" }, label));
    }
    root.append(g);
  });
  return root;
}

function asAxis(value) { const n = Number(value); return value !== null && value !== "" && Number.isFinite(n) ? n : plotText(value); }

function axis(label, values) {
  const present = values.filter(v => v !== null && v !== undefined);
  const numeric = present.every(v => v !== "" && Number.isFinite(Number(v)));
  if (numeric) {
    const nums = values.map(v => (v === null || v === undefined ? NaN : Number(v)));
    const real = nums.filter(v => !Number.isNaN(v));
    const min = real.length ? Math.min(...real) : 0, max = real.length ? Math.max(...real) : 1;
    const tick = v => fmt(Number(v.toPrecision(4)));
    const ticks = min === max ? [[min, tick(min)]] : [0, 0.25, 0.5, 0.75, 1].map(f => [min + (max - min) * f, tick(min + (max - min) * f)]);
    return { label, values: nums, min, max, ticks, shown: values.map(fmt) };
  }
  const names = [...new Set(present.map(v => String(v)))].sort();
  return { label, values: values.map(v => (v === null || v === undefined ? NaN : names.indexOf(String(v)))), min: 0, max: Math.max(names.length - 1, 1),
    ticks: names.map((n, i) => [i, n.length > 24 ? n.slice(0, 23) + "…" : n]), shown: values.map(fmt) };
}

async function stepsPlot(ids, metric, node) {
  const traces = [];
  for (const id of ids) {
    try {
      const series = await apiJson(`runs/${encodeURIComponent(id)}/history`);
      const s = series[metric];
      if (s) traces.push({ type: "scatter", mode: "lines+markers", name: id.slice(0, 8), x: s.step, y: s.value });
    } catch (err) { node.before(errorBox(err)); }
  }
  if (!traces.length) { node.replaceWith(el("p", { class: "muted", text: `none of these runs reported ${metric}` })); return; }
  await newPlot(node, traces, { xaxis: { title: { text: "step" } }, yaxis: { title: { text: plotText(metric) } }, height: 380 });
  node.dataset.ready = String(traces.length);
}

// -- sweeps --------------------------------------------------------------------------------

async function sweepsPage(token) {
  const holder = el("div", { id: "sweeps-table" }, el("p", { class: "muted", text: "Loading sweeps…" }));
  show(el("h1", { text: "Sweeps" }), holder);
  const load = async () => {
    let rows;
    try { rows = await apiJson("sweeps"); } catch (err) { holder.replaceChildren(errorBox(err)); return; }
    if (token !== pageToken) return;
    if (!rows.length) { holder.replaceChildren(el("p", { class: "muted", id: "empty", text: "No sweep is recorded yet (reprun sweep URI -P NAME=SPEC...)." })); return; }
    const head = el("tr", {}, ["sweep", "status", "created", "mode", "trials", "metric", "best", "best run", "project"].map(h => el("th", { text: h })));
    holder.replaceChildren(el("table", { class: "grid", id: "sweeps" }, el("thead", {}, head), el("tbody", {}, rows.map(r => el("tr", { "data-sweep": r.sweep_id },
      el("td", {}, el("a", { class: "sweep-link", href: "#/sweeps/" + encodeURIComponent(r.sweep_id), text: r.sweep_id })),
      el("td", {}, statusCell(r.status)), el("td", { text: when(r.created_at) }), el("td", { text: r.mode }),
      el("td", { class: "num", text: `${r.trials_done}/${r.trials_total}` }),
      el("td", { text: r.metric ? `${r.metric} (${r.goal})` : "-" }),
      el("td", { class: "num", "data-field": "best", text: r.best ? fmt(r.best.value) : "-" }),
      el("td", {}, r.best && r.best.run_id ? runLink(r.best.run_id) : "-"),
      el("td", { text: r.project }))))));
  };
  const stamp = await stampNow();
  await load();
  watchStore(token, load, stamp); // a trial that ends changes the run store
}

async function sweepPage(token, id, params) {
  const stamp = await stampNow();
  const metricAsked = params.get("metric") || "";
  let sweep;
  try { sweep = await apiJson("sweeps/" + encodeURIComponent(id), metricAsked ? { metric: metricAsked } : null); } catch (err) { if (token === pageToken) show(el("h1", { text: "Sweep" }), errorBox(err)); return; }
  if (token !== pageToken) return;
  const spec = sweep.spec, where = sweepWhere(sweep.sweep_id);
  const metric = spec.metric;
  const swept = [...new Set(sweep.trials.flatMap(t => Object.keys(t.params || {})))];
  const sections = [el("h1", {}, "Sweep ", el("code", { id: "sweep-id", text: sweep.sweep_id }), " ", statusCell(sweep.status))];
  sections.push(kv([
    ["project", `${sweep.project} (${spec.uri})`], ["entry point", spec.entry_point], ["version", spec.version],
    ["mode", spec.mode], ["seed", spec.seed], ["trials asked", spec.trials], ["max trials", spec.max_trials],
    ["parameters", spec.params.length ? el("span", { id: "sweep-params" }, spec.params.flatMap((p, i) => [i ? " " : null, el("code", { class: "tag", text: "-P " + p })])) : null],
    ["metric", metric ? `${metric} (${spec.goal === "max" ? "max: higher is better" : "min: lower is better"})` : "none (rank with ?metric=NAME:min in the address)"],
    ["parallel", spec.parallel], ["max failures", spec.max_failures],
    ["created", when(sweep.created_at)], ["ended", when(sweep.ended_at)], ["resumed", sweep.resumed || null],
    ["reason", sweep.reason],
  ]));
  sections.push(el("p", {}, el("a", { class: "button", id: "sweep-runs", href: "#/runs?" + new URLSearchParams({ where }).toString() }, "Its runs"),
    " ", el("a", { class: "button", id: "sweep-plots", href: "#/plots?" + new URLSearchParams({ where, metric: metric || "", dims: swept.map(n => "params." + n).join(","), kind: "parcoords" }).toString() }, "Plots")));
  const head = el("tr", {}, ["rank", "trial", "status", metric || "value", ...swept, "run"].map(h => el("th", { text: h })));
  const rows = sweep.trials.map((t, i) => el("tr", { "data-trial": t.index, "data-run": t.run_id || "" },
    el("td", { class: "num", text: i + 1 }), el("td", { class: "num", text: t.index }),
    el("td", {}, statusCell(t.status || "PENDING")), el("td", { class: "num", "data-field": "value", text: fmt(t.value) }),
    swept.map(n => el("td", { text: (t.params || {})[n] === undefined ? "-" : t.params[n] })),
    el("td", {}, t.run_id ? runLink(t.run_id) : el("span", { class: "muted", text: "not run" }))));
  sections.push(el("h2", { text: `Trials (${sweep.trials.length}), best first` }),
    el("table", { class: "grid", id: "trials" }, el("thead", {}, head), el("tbody", {}, rows)));
  const parDiv = el("div", { id: "sweep-parcoords" }, el("p", { class: "muted", text: "Loading runs…" }));
  sections.push(el("h2", { text: "Parallel coordinates" }), parDiv);
  show(...sections);
  let runs;
  try { runs = await apiJson("runs", { where, limit: "10000" }); } catch (err) { parDiv.replaceChildren(errorBox(err)); return; }
  if (token !== pageToken) return;
  const shown = metric || [...new Set(runs.flatMap(r => Object.keys(r.metrics || {})))].sort()[0];
  const usable = shown ? runs.filter(r => typeof (r.metrics || {})[shown] === "number") : [];
  if (!usable.length || !swept.length) {
    parDiv.replaceChildren(el("p", { class: "muted", text: shown ? `No trial reported ${shown} yet.` : "No trial reported a metric yet." }));
  } else {
    const param = (r, n) => { const v = (r.params || {})[n]; return v === undefined ? null : v; };
    const axes = [...swept.map(n => axis("params." + n, usable.map(r => param(r, n)))), axis("metrics." + shown, usable.map(r => r.metrics[shown]))];
    parDiv.replaceChildren(parallelCoordinates(axes, usable.map(r => r.run_id), axes.length - 1));
    parDiv.dataset.ready = String(usable.length);
  }
  if (sweep.status === "RUNNING") watchStore(token, () => { if (token === pageToken) route(); }, stamp);
}

// -- routing -------------------------------------------------------------------------------

async function route() {
  const token = ++pageToken;
  const { path, params } = hashState();
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", path.startsWith(a.getAttribute("href").slice(1)));
  try {
    if (path.startsWith("/run/")) await runPage(token, decodeURIComponent(path.slice(5)));
    else if (path === "/compare") await comparePage(token, params);
    else if (path === "/plots") await plotsPage(token, params);
    else if (path === "/sweeps") await sweepsPage(token);
    else if (path.startsWith("/sweeps/")) await sweepPage(token, decodeURIComponent(path.slice(8)), params);
    else if (path === "/models" || path.startsWith("/models/")) await modelsRoute(token, path);
    else await runsPage(token, params);
  } catch (err) {
    if (token === pageToken) show(errorBox(err));
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
