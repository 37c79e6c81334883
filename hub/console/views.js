// Maintenance (device health), KPI charts and the broadcast panel.
import { api, h } from "./api.js";
import { t, localTime } from "./i18n.js";

function formParams(form) {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) if (value) params.append(name, value);
  return params;
}

// -- maintenance ---------------------------------------------------------------

/** Wire the maintenance view's filter form. */
export function setupMaintenance() {
  const form = document.getElementById("maint-filter");
  form.addEventListener("submit", (event) => { event.preventDefault(); loadDevices(); });
}

/** Load devices matching the filter. */
export async function loadDevices() {
  const params = formParams(document.getElementById("maint-filter"));
  params.set("limit", "200");
  const body = document.getElementById("maint-body");
  try {
    const page = await api(`/api/devices?${params}`);
    body.replaceChildren(...page.items.map((d) => h("tr", { dataset: { deviceId: d.id }, onclick: () => deviceDetail(d.id) },
      h("td", {}, h("div", { text: d.name || d.id }), h("small", { class: "muted", text: d.id })),
      h("td", { text: t(`kind.${d.kind}`) === `kind.${d.kind}` ? d.kind : t(`kind.${d.kind}`) }),
      h("td", { class: `health-${d.health ?? "unknown"}`, text: t(`health.${d.health ?? "unknown"}`) }),
      h("td", { text: localTime(d.health_since, true) }))));
    if (!page.items.length) body.replaceChildren(h("tr", {}, h("td", { colspan: "4", class: "muted", text: t("maint.none") })));
  } catch (err) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: "4", class: "error", text: t("common.error", { m: err.message }) })));
  }
}

async function deviceDetail(id) {
  const pane = document.getElementById("maint-detail");
  try {
    const health = await api(`/api/devices/${encodeURIComponent(id)}/health`);
    const evidence = health.last_sample?.evidence_url || health.transitions.find((x) => x.evidence_url)?.evidence_url;
    pane.replaceChildren(
      h("h3", { text: `${health.name || id} (${id})` }),
      h("dl", {},
        h("dt", { text: t("maint.health") }), h("dd", { class: `health-${health.health}`, text: t(`health.${health.health}`) }),
        h("dt", { text: t("maint.since") }), h("dd", { text: localTime(health.since, true) }),
        h("dt", { text: t("maint.reason") }), h("dd", { text: health.reason ?? "" })),
      evidence ? h("div", { class: "media" }, h("h4", { text: t("maint.evidence") }), h("img", { src: evidence, alt: t("maint.evidence") })) : null,
      h("ol", { class: "history" }, health.transitions.map((x) =>
        h("li", { text: `${localTime(x.at, true)} ${x.from_state ?? ""} → ${x.to_state} ${x.reason ?? ""}` }))));
  } catch (err) {
    pane.replaceChildren(h("p", { class: "error", text: t("common.error", { m: err.message }) }));
  }
}

// -- KPI -------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function pct(value) { return value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)}%`; }

/** Wire the KPI form. */
export function setupKpi() {
  const form = document.getElementById("kpi-filter");
  const now = new Date();
  form.elements.when.value = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}`;
  form.elements.period.addEventListener("change", () => {
    const today = new Date().toISOString().slice(0, 10);
    form.elements.when.value = form.elements.period.value === "day" ? today : today.slice(0, 7);
  });
  form.addEventListener("submit", (event) => { event.preventDefault(); loadKpi(); });
}

/** Draw the selected period: one pair of bars (online, intact) per child jurisdiction. */
export async function loadKpi() {
  const form = document.getElementById("kpi-filter");
  const params = new URLSearchParams();
  if (form.elements.jurisdiction.value) params.set("jurisdiction", form.elements.jurisdiction.value);
  params.set(form.elements.period.value, form.elements.when.value);
  const chart = document.getElementById("kpi-chart");
  const summary = document.getElementById("kpi-summary");
  try {
    const report = await api(`/api/kpi?${params}`);
    summary.replaceChildren(h("p", {},
      `${report.node.name} · ${report.period} · ${t("kpi.devices")} ${report.node.devices} · `,
      h("b", { text: `${t("kpi.online")} ${pct(report.node.online_rate)}` }), " · ",
      h("b", { text: `${t("kpi.intact")} ${pct(report.node.intact_rate)}` })));
    chart.replaceChildren(barChart(report.children.length ? report.children : [report.node]));
  } catch (err) {
    chart.replaceChildren(h("p", { class: "error", text: t("common.error", { m: err.message }) }));
  }
}

function barChart(rows) {
  const width = Math.max(480, rows.length * 90 + 60);
  const height = 260;
  const base = 210;
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  for (const tick of [0, 0.5, 1]) {
    const y = base - tick * 180;
    svg.append(s("line", { x1: 40, x2: width - 10, y1: y, y2: y, stroke: "#2a3642" }), s("text", { x: 4, y: y + 4 }, `${tick * 100}%`));
  }
  rows.forEach((row, i) => {
    const x = 50 + i * 90;
    const bars = [["online_rate", "legend-online"], ["intact_rate", "legend-intact"]];
    bars.forEach(([key, cls], j) => {
      const value = row[key] ?? 0;
      const bar = s("rect", { x: x + j * 32, y: base - value * 180, width: 28, height: value * 180, class: cls });
      bar.append(s("title", {}, `${row.name} ${t(key === "online_rate" ? "kpi.online" : "kpi.intact")} ${pct(row[key])}`));
      svg.append(bar);
    });
    svg.append(s("text", { x, y: base + 18 }, (row.name || row.code || "").slice(0, 8)));
  });
  svg.append(s("rect", { x: width - 200, y: 232, width: 12, height: 12, class: "legend-online" }), s("text", { x: width - 184, y: 243 }, t("kpi.online")),
    s("rect", { x: width - 110, y: 232, width: 12, height: 12, class: "legend-intact" }), s("text", { x: width - 94, y: 243 }, t("kpi.intact")));
  return svg;
}

// -- broadcast -------------------------------------------------------------------

/** Wire the broadcast form. */
export function setupBroadcast() {
  document.getElementById("bc-form").addEventListener("submit", (event) => { event.preventDefault(); send(); });
}

/** List the units in scope and fill the target list (units and zones). */
export async function loadUnits() {
  const select = document.getElementById("bc-target");
  const body = document.getElementById("bc-units");
  try {
    const units = await api("/api/broadcast/units");
    const zones = [...new Set(units.flatMap((u) => u.tags))].sort();
    select.replaceChildren(
      ...units.map((u) => h("option", { value: `unit:${u.id}`, text: `${u.name || u.id} (${t(`health.${u.status}`) === `health.${u.status}` ? u.status : t(`health.${u.status}`)})` })),
      ...zones.map((z) => h("option", { value: `zone:${z}`, text: t("bc.zone", { z }) })));
    body.replaceChildren(...units.map((u) => h("tr", {},
      h("td", { text: `${u.name || u.id} · ${u.id}` }), h("td", { text: u.tags.join(", ") }),
      h("td", { class: `health-${u.health}`, text: u.status }))));
  } catch (err) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: "3", class: "error", text: t("common.error", { m: err.message }) })));
  }
}

async function send() {
  const form = document.getElementById("bc-form");
  const result = document.getElementById("bc-result");
  const [kind, id] = form.elements.target.value.split(/:(.*)/s);
  const path = kind === "zone" ? `/api/broadcast/zones/${encodeURIComponent(id)}/commands` : `/api/broadcast/units/${encodeURIComponent(id)}/commands`;
  result.textContent = t("bc.sent");
  try {
    const answer = await api(`${path}?wait=true`, { method: "POST", body: { action: "tts", text: form.elements.text.value } });
    const commands = answer.commands || [answer];
    result.replaceChildren(...commands.map((c) => h("div", { dataset: { outcome: c.outcome }, text: `${c.unit_id}: ${t(`bc.outcome.${c.outcome}`, { r: c.reason ?? "" })}` })));
  } catch (err) {
    result.textContent = t("common.error", { m: err.message });
  }
}
