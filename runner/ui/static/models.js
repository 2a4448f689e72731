// reprun's web view: the model registry (#/models, #/models/NAME, #/models/NAME/VERSION) and the
// versions a run registered (on the run's page). Uses the helpers of app.js; every value from
// the store reaches the page as text.
"use strict";

function modelLink(name, version, label) {
  const path = "#/models/" + encodeURIComponent(name) + (version ? "/" + encodeURIComponent(version) : "");
  return el("a", { href: path, class: "model-link", text: label || (version ? `${name} v${version}` : name) });
}

function aliasTags(aliases) {
  return aliases.map(a => el("span", { class: "tag alias", text: "@" + a }));
}

async function modelsPage(token) {
  let rows;
  try { rows = await apiJson("models"); } catch (err) { if (token === pageToken) show(el("h1", { text: "Models" }), errorBox(err)); return; }
  if (token !== pageToken) return;
  if (!rows.length) { show(el("h1", { text: "Models" }), el("p", { class: "muted", text: "No model registered yet: reprun models register NAME RUN" })); return; }
  show(el("h1", { text: "Models" }), el("table", { class: "grid", id: "models" },
    el("tr", {}, ["name", "versions", "latest", "aliases", "updated", "run", "description"].map(h => el("th", { text: h }))),
    rows.map(r => el("tr", { "data-model": r.name },
      el("td", {}, modelLink(r.name)), el("td", { class: "num", text: r.versions }),
      el("td", { class: "num" }, modelLink(r.name, r.latest, String(r.latest))),
      el("td", {}, Object.entries(r.aliases).sort().map(([a, v]) => el("span", { class: "tag alias" }, "@" + a + " → ", modelLink(r.name, v, String(v))))),
      el("td", { text: when(r.updated_at) }), el("td", {}, runLink(r.run_id)), el("td", { text: r.description || "" })))));
}

async function modelPage(token, name) {
  let data;
  try { data = await apiJson("models/" + encodeURIComponent(name)); } catch (err) { if (token === pageToken) show(el("h1", { text: "Model " + name }), errorBox(err)); return; }
  if (token !== pageToken) return;
  const history = data.alias_history || [];
  show(el("h1", {}, "Model ", el("code", { id: "model-name", text: data.name })),
    el("p", {}, "Aliases: ", Object.keys(data.aliases).length ? Object.entries(data.aliases).sort().map(([a, v]) => el("span", { class: "tag alias" }, "@" + a + " → ", modelLink(data.name, v, "v" + v))) : "none"),
    el("h2", { text: "Versions" }),
    el("table", { class: "grid", id: "versions" },
      el("tr", {}, ["version", "registered", "run", "made by runs", "digest", "size", "aliases", "metrics", "description"].map(h => el("th", { text: h }))),
      data.versions.slice().reverse().map(v => el("tr", { "data-version": v.version },
        el("td", { class: "num" }, modelLink(data.name, v.version, String(v.version))), el("td", { text: when(v.created_at) }),
        el("td", {}, runLink(v.run_id)), el("td", { class: "num", text: v.runs.length }),
        el("td", {}, el("code", { text: v.digest.slice(0, 23) })), el("td", { class: "num", text: v.size }),
        el("td", {}, aliasTags(v.aliases)),
        el("td", { text: Object.entries(v.metrics).map(([k, m]) => `${k}=${fmt(m)}`).join(", ") }),
        el("td", { text: v.description || "" })))),
    el("h2", { text: "Alias history" }), history.length
      ? el("table", { class: "grid", id: "alias-history" }, el("tr", {}, ["when", "alias", "to", "from", "by"].map(h => el("th", { text: h }))),
        history.slice().reverse().map(m => el("tr", {}, el("td", { text: when(m.at) }), el("td", { text: "@" + m.alias }),
          el("td", { text: m.version === null ? "(deleted)" : "v" + m.version }), el("td", { text: m.previous === null ? "-" : "v" + m.previous }), el("td", { text: m.by }))))
      : el("p", { class: "muted", text: "no alias set yet" }));
}

async function versionPage(token, name, which) {
  let v;
  try { v = await apiJson("models/" + encodeURIComponent(name) + "/" + encodeURIComponent(which)); } catch (err) { if (token === pageToken) show(el("h1", { text: `Model ${name} ${which}` }), errorBox(err)); return; }
  if (token !== pageToken) return;
  const lin = v.lineage, mm = v.mlflow_model;
  const sections = [el("h1", {}, "Model ", modelLink(v.name), " version ", el("code", { id: "version-number", text: v.version }), " ", aliasTags(v.aliases))];
  sections.push(kv([
    ["registered", `${when(v.created_at)} by ${v.created_by}`], ["description", v.description],
    ["run", runLink(v.run_id)],
    ["made by", el("span", { id: "version-runs" }, v.runs.flatMap((r, i) => [i ? ", " : "", runLink(r, r.slice(0, 8))]))],
    ["path", `${v.path || "(all outputs)"} (${v.kind})`], ["digest", el("code", { id: "version-digest", text: v.digest })], ["size", `${v.size} bytes`],
    ["tags", Object.entries(v.tags).map(([k, t]) => `${k}=${t}`).join(", ")],
    ["mlflow", v.mlflow ? `${v.mlflow.tracking_uri} ${v.mlflow.version ? "version " + v.mlflow.version : "not created: " + v.mlflow.error}` : null],
  ]));
  if (mm) sections.push(el("h2", { text: "MLflow model" }), kv([["flavors", mm.flavors.join(", ")],
    ...Object.entries(mm.signature || {}).map(([k, t]) => ["signature " + k, el("code", { text: t })])]));
  const metrics = Object.entries(v.metrics);
  sections.push(el("h2", { text: "Metrics of the run" }), metrics.length
    ? el("table", { class: "grid", id: "version-metrics" }, metrics.map(([k, m]) => el("tr", {}, el("td", { text: k }), el("td", { class: "num", text: fmt(m) }))))
    : el("p", { class: "muted", text: "none reported" }));
  sections.push(el("h2", { text: "Lineage" }), kv([
    ["project", `${lin.project} / ${lin.entry_point}`], ["commit", lin.commit],
    ["uncommitted changes", lin.dirty ? `yes (patch sha256 ${String(lin.patch_sha256).slice(0, 12)})` : lin.dirty === false ? "none" : null],
    ["snapshot", lin.snapshot_sha256 ? "sha256 " + lin.snapshot_sha256.slice(0, 12) : null],
    ["environment", `${lin.env_manager || "-"}, python ${lin.python_version || "-"}`],
    ["lock", lin.lock_file ? `${lin.lock_file} (sha256 ${String(lin.lock_sha256).slice(0, 12)})` : null],
    ["parameters", Object.entries(lin.parameters).map(([k, p]) => `${k}=${p}`).join(", ")],
  ]));
  sections.push(el("h3", { text: "Input data" }), lin.inputs.length
    ? el("table", { class: "grid", id: "version-inputs" }, el("tr", {}, ["name", "digest", "made by"].map(h => el("th", { text: h }))),
      lin.inputs.map(i => el("tr", {}, el("td", { text: i.name }), el("td", {}, el("code", { text: String(i.digest || "-").slice(0, 30) })),
        el("td", { class: "lineage" }, i.produced_by.map(r => el("div", {}, runLink(r, r.slice(0, 8))))))))
    : el("p", { class: "muted", text: "none declared" }));
  sections.push(el("h2", { text: "Files" }), el("table", { class: "grid", id: "version-files" },
    el("tr", {}, ["path", "size", "digest"].map(h => el("th", { text: h }))),
    v.files.map(f => el("tr", {}, el("td", { text: f.path }), el("td", { class: "num", text: f.size }), el("td", {}, el("code", { text: f.digest.slice(0, 30) }))))));
  show(...sections);
}

async function runModels(id, holder) {
  let versions;
  try { versions = await apiJson("runs/" + encodeURIComponent(id) + "/models"); } catch (err) { return; }
  if (!versions.length) return;
  holder.replaceChildren(el("h2", { text: "Models" }), el("p", { id: "run-models" },
    versions.flatMap((v, i) => [i ? ", " : "", modelLink(v.name, v.version), " ", ...aliasTags(v.aliases)])));
}

async function modelsRoute(token, path) {
  const parts = path.split("/").slice(2).map(decodeURIComponent);
  if (!parts.length || !parts[0]) await modelsPage(token);
  else if (parts.length === 1) await modelPage(token, parts[0]);
  else await versionPage(token, parts[0], parts[1]);
}
