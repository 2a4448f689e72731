// The pipeline part of a pipeline run's page: its graph drawn as SVG by this page (no inline
// script, no eval: the Content-Security-Policy forbids both) and a table of its steps. Each step
// shows its status, whether it was reused (and from which run) and its metrics, and links to its
// run. Uses el, svg, runLink, statusCell, fmt and apiJson of app.js.
"use strict";

const STATUS_COLOURS = { FINISHED: "#1a7f37", FAILED: "#b42318", KILLED: "#b42318", UNKNOWN: "#b42318", RUNNING: "#9a6700" };
const NODE_W = 210, NODE_H = 74, GAP_X = 70, GAP_Y = 22, PAD = 12, TOP = 44;

// The column of each step: one more than the deepest step it needs (the steps come in an
// order that puts each after those it needs).
function stepColumns(steps) {
  const column = {};
  for (const s of steps) column[s.name] = Math.max(-1, ...(s.needs || []).map(n => column[n] ?? -1)) + 1;
  return column;
}

// A step's metrics, from the pipeline run's `STEP.NAME` metrics.
function stepMetrics(record, name) {
  const prefix = name + ".";
  return Object.entries(record.metrics || {}).filter(([k]) => k.startsWith(prefix)).map(([k, m]) => [k.slice(prefix.length), m.last]);
}

function stepState(step) {
  if (step.reused_from) return { label: "reused", detail: "from " + step.reused_from.slice(0, 8) };
  if (!step.status) return { label: "not run", detail: step.reason || "" };
  return { label: step.status, detail: step.run_id ? "run " + step.run_id.slice(0, 8) : "" };
}

function pipelineGraph(record) {
  const steps = record.pipeline.steps;
  const column = stepColumns(steps);
  const rows = {}, place = {};
  for (const s of steps) { const c = column[s.name]; rows[c] = (rows[c] || 0) + 1; place[s.name] = [c, rows[c] - 1]; }
  const columns = Math.max(0, ...Object.values(column)) + 1, most = Math.max(1, ...Object.values(rows));
  const width = PAD * 2 + columns * NODE_W + (columns - 1) * GAP_X, height = TOP + PAD + most * NODE_H + (most - 1) * GAP_Y;
  const at = name => { const [c, r] = place[name]; return [PAD + c * (NODE_W + GAP_X), TOP + r * (NODE_H + GAP_Y)]; };
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: Math.min(width, 1100), class: "pipeline-graph", id: "pipeline-graph", role: "img" },
    svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#667085" }))));
  for (const s of steps) {
    for (const need of s.needs || []) {
      if (!(need in place)) continue;
      const [x1, y1] = at(need), [x2, y2] = at(s.name);
      // To the next column: side to side; over columns between: an arc above the nodes.
      const skips = column[s.name] - column[need] > 1;
      const a = skips ? [x1 + NODE_W / 2, y1] : [x1 + NODE_W, y1 + NODE_H / 2];
      const b = skips ? [x2 + NODE_W / 2, y2] : [x2, y2 + NODE_H / 2], mid = (a[0] + b[0]) / 2;
      const d = skips ? `M ${a[0]} ${a[1]} C ${a[0]} ${PAD - 8}, ${b[0]} ${PAD - 8}, ${b[0]} ${b[1]}`
        : `M ${a[0]} ${a[1]} C ${mid} ${a[1]}, ${mid} ${b[1]}, ${b[0]} ${b[1]}`;
      root.append(svg("path", { d, fill: "none", stroke: "#98a2b3", "stroke-width": 1.5,
        "marker-end": "url(#arrow)", class: "pipeline-edge", "data-from": need, "data-to": s.name }));
    }
  }
  for (const s of steps) {
    const [x, y] = at(s.name), state = stepState(s);
    const colour = s.reused_from ? "#2457c5" : STATUS_COLOURS[s.status] || "#98a2b3";
    const metrics = stepMetrics(record, s.name).slice(0, 2).map(([k, v]) => `${k}=${fmt(v)}`).join("  ");
    const node = svg("g", { class: "pipeline-node", "data-step": s.name, "data-status": s.status || "", "data-reused": s.reused_from || "" },
      svg("title", {}, `${s.name} (${s.entry_point}): ${state.label} ${state.detail}`.trim()),
      svg("rect", { x, y, width: NODE_W, height: NODE_H, rx: 6, fill: "#fff", stroke: colour, "stroke-width": 2 }),
      svg("rect", { x, y, width: 6, height: NODE_H, fill: colour }),
      svg("text", { x: x + 14, y: y + 18, class: "node-name" }, s.name.length > 24 ? s.name.slice(0, 23) + "…" : s.name),
      svg("text", { x: x + 14, y: y + 36, class: "node-state", fill: colour }, `${state.label} ${state.detail}`.trim()),
      svg("text", { x: x + 14, y: y + 54, class: "node-metrics" }, metrics.length > 34 ? metrics.slice(0, 33) + "…" : metrics));
    if (s.run_id) {
      const link = svg("a", { href: "#/run/" + encodeURIComponent(s.run_id), class: "step-link", "data-run": s.run_id });
      link.append(node);
      root.append(link);
    } else root.append(node);
  }
  return root;
}

function pipelineTable(record) {
  const head = el("tr", {}, ["step", "entry point", "after", "status", "reused from", "run", "metrics"].map(h => el("th", { text: h })));
  const rows = record.pipeline.steps.map(s => el("tr", { "data-step": s.name, "data-run": s.run_id || "" },
    el("td", { text: s.name }), el("td", { text: s.entry_point }), el("td", { text: (s.needs || []).join(", ") || "-" }),
    el("td", {}, s.status ? statusCell(s.status) : el("span", { class: "muted", text: "not run" }), s.reason && s.status !== "FINISHED" ? el("div", { class: "muted", text: s.reason }) : null),
    el("td", { class: "reused" }, s.reused_from ? runLink(s.reused_from, s.reused_from.slice(0, 8)) : "-"),
    el("td", {}, s.run_id ? runLink(s.run_id, s.run_id.slice(0, 8)) : "-"),
    el("td", { class: "step-metrics", text: stepMetrics(record, s.name).map(([k, v]) => `${k}=${fmt(v)}`).join(", ") || "-" })));
  return el("table", { class: "grid", id: "pipeline-steps" }, el("thead", {}, head), el("tbody", {}, rows));
}

// Fills `holder` with the graph and the steps of pipeline run `id` (from /api/pipelines/ID).
async function pipelineSection(token, id, holder) {
  let record;
  try { record = await apiJson("pipelines/" + encodeURIComponent(id)); } catch (err) { holder.replaceChildren(errorBox(err)); return; }
  if (token !== pageToken || !record.pipeline) return;
  const info = record.pipeline;
  const reused = info.steps.filter(s => s.reused_from).length;
  holder.replaceChildren(
    el("h2", { text: `Pipeline ${info.name}: ${info.steps.length} steps (${reused} reused)` + (info.resumed ? `, resumed ${info.resumed}×` : "") }),
    pipelineGraph(record), pipelineTable(record));
  holder.dataset.ready = "1";
}
