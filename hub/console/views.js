// Maintenance (device health), KPI charts and the broadcast panel.
import { api, h } from "./api.js";
import { has, t, tOr, localTime } from "./i18n.js";
import { jurisdictionName, knownJurisdictions, loadJurisdictions } from "./names.js";
import { loadShortfalls } from "./evidence.js";
import { armedCell, gbDevices, gbFields } from "./gb28181.js";

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

/** Offer the jurisdictions in scope by name in the filters' code fields. */
export async function fillJurisdictionChoices() {
  await loadJurisdictions();
  const list = document.getElementById("jurisdiction-choices");
  list.replaceChildren(...[...knownJurisdictions().values()].map((node) =>
    h("option", { value: node.code, label: node.name, text: node.name })));
}

function kindText(kind) { return tOr(`kind.${kind}`, kind); }

/** A health reason in the console's language: a code with parameters when the hub gives one
 *  (with the hub's own sentence beneath it as the technical detail), the sentence otherwise. */
export function reasonText(item) {
  const code = item?.reason_code;
  if (code && has(`reason.${code}`)) {
    // The hub's own sentence stays beneath for the maintainer who needs the figures.
    return h("span", { class: "reason", dataset: { code } }, t(`reason.${code}`, item.reason_params || {}),
      item.reason ? h("small", { class: "reason-detail", "data-raw": "text", text: item.reason }) : null);
  }
  return item?.reason ? h("span", { class: "reason", "data-raw": "text", text: item.reason }) : "";
}

/** Load devices matching the filter. */
export async function loadDevices() {
  fillJurisdictionChoices();
  loadShortfalls();
  const params = formParams(document.getElementById("maint-filter"));
  params.set("limit", "200");
  const body = document.getElementById("maint-body");
  try {
    const [page, gb] = await Promise.all([api(`/api/devices?${params}`), gbDevices()]);
    body.replaceChildren(...page.items.map((d) => h("tr", { dataset: { deviceId: d.id }, onclick: () => deviceDetail(d.id) },
      h("td", {}, h("div", { "data-raw": "name", text: d.name || d.id }), h("small", { class: "muted", "data-raw": "id", text: d.id })),
      h("td", { class: "kind", text: kindText(d.kind) }),
      h("td", { class: `health-${d.health ?? "unknown"}`, text: t(`health.${d.health ?? "unknown"}`) }),
      h("td", { text: localTime(d.health_since, true) }),
      armedCell(gb.get(d.id)))));
    if (!page.items.length) body.replaceChildren(h("tr", {}, h("td", { colspan: "5", class: "muted", text: t("maint.none") })));
  } catch (err) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: "5", class: "error", text: t("common.error", { m: err.message }) })));
  }
}

let shownDevice = null;

/** Re-draw the open device detail (after a language switch). */
export function relabelMaintenance() { if (shownDevice) deviceDetail(shownDevice); }

async function deviceDetail(id) {
  shownDevice = id;
  const pane = document.getElementById("maint-detail");
  try {
    const [health, record, gb] = await Promise.all([
      api(`/api/devices/${encodeURIComponent(id)}/health`),
      api(`/api/devices/${encodeURIComponent(id)}`).catch(() => null),
      api(`/api/gb28181/devices/${encodeURIComponent(id)}`).catch(() => null),
    ]);
    const evidence = health.last_sample?.evidence_url || health.transitions.find((x) => x.evidence_url)?.evidence_url;
    const field = (label, ...value) => [h("dt", { text: t(label) }), h("dd", {}, ...value)];
    pane.replaceChildren(
      h("h3", {}, h("span", { "data-raw": "name", text: health.name || id }), " ", h("small", { class: "muted", "data-raw": "id", text: id })),
      h("dl", { class: "grid" },
        field("maint.name", h("span", { "data-raw": "name", text: health.name || id })),
        field("maint.id", h("span", { "data-raw": "id", text: id })),
        field("maint.kind_label", kindText(health.kind)),
        field("maint.jurisdiction_name", record?.jurisdiction ? jurisdictionName(record.jurisdiction) : t("common.none")),
        field("maint.health", h("span", { class: `health-${health.health}`, text: t(`health.${health.health}`) })),
        field("maint.since", localTime(health.since, true)),
        field("maint.reason", reasonText(health)),
        record?.address ? field("maint.location", h("span", { "data-raw": "text", text: record.address })) : [],
        gb ? gbFields(gb, field) : []),
      evidence ? h("div", { class: "media" }, h("h4", { text: t("maint.evidence") }), h("img", { src: evidence, alt: t("maint.evidence") })) : "",
      h("h4", { text: t("maint.transitions") }),
      h("table", { class: "list transitions" },
        h("thead", {}, h("tr", {}, ["maint.at", "maint.from", "maint.to", "maint.reason"].map((k) => h("th", { text: t(k) })))),
        h("tbody", {}, health.transitions.map((x) => h("tr", {},
          h("td", { class: "nowrap", text: localTime(x.at, true) }),
          h("td", { class: `health-${x.from_state}`, text: tOr(`health.${x.from_state}`, x.from_state ?? "") }),
          h("td", { class: `health-${x.to_state}`, text: tOr(`health.${x.to_state}`, x.to_state) }),
          h("td", {}, reasonText(x)))))));
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
  fillJurisdictionChoices();
  const form = document.getElementById("kpi-filter");
  const params = new URLSearchParams();
  if (form.elements.jurisdiction.value) params.set("jurisdiction", form.elements.jurisdiction.value);
  params.set(form.elements.period.value, form.elements.when.value);
  const chart = document.getElementById("kpi-chart");
  const summary = document.getElementById("kpi-summary");
  try {
    const report = await api(`/api/kpi?${params}`);
    const name = report.node.code ? report.node.name : t("kpi.all");
    summary.replaceChildren(h("p", {},
      h("span", { class: "node-name", text: name }), ` · ${report.period} · ${t("kpi.devices")} ${report.node.devices} · `,
      h("b", { text: `${t("kpi.online")} ${pct(report.node.online_rate)}` }), " · ",
      h("b", { text: `${t("kpi.intact")} ${pct(report.node.intact_rate)}` })));
    const rows = report.children.length ? report.children : [{ ...report.node, name }];
    chart.replaceChildren(barChart(rows));
  } catch (err) {
    chart.replaceChildren(h("p", { class: "error", text: t("common.error", { m: err.message }) }));
  }
}

// Bars: 180 px for 100 %. Each jurisdiction gets a group wide enough for its two bars; the
// names go below, slanted when they would not fit side by side; the legend sits above the plot.
function barChart(rows) {
  const group = 84;
  const left = 48;
  const top = 34;
  const base = top + 180;
  const longest = Math.max(...rows.map((row) => [...(row.name || row.code || "")].length), 1);
  const slant = longest * 13 > group - 8;
  const labelRoom = slant ? Math.ceil(longest * 13 * 0.6) + 24 : 28;
  const width = Math.max(480, left + rows.length * group + 20);
  const height = base + labelRoom;
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  for (const tick of [0, 0.5, 1]) {
    const y = base - tick * 180;
    svg.append(s("line", { x1: left - 8, x2: width - 10, y1: y, y2: y, stroke: "#2a3642" }), s("text", { x: 4, y: y + 4 }, `${tick * 100}%`));
  }
  rows.forEach((row, i) => {
    const x = left + i * group + 10;
    const bars = [["online_rate", "legend-online"], ["intact_rate", "legend-intact"]];
    bars.forEach(([key, cls], j) => {
      const value = row[key] ?? 0;
      const bar = s("rect", { x: x + j * 30, y: base - value * 180, width: 26, height: value * 180, class: cls });
      bar.append(s("title", {}, `${row.name} ${t(key === "online_rate" ? "kpi.online" : "kpi.intact")} ${pct(row[key])}`));
      svg.append(bar);
    });
    const cx = x + 28;
    const label = row.name || row.code || "";
    svg.append(slant
      ? s("text", { x: cx, y: base + 16, class: "axis-label", "text-anchor": "end", transform: `rotate(-35 ${cx} ${base + 16})` }, label)
      : s("text", { x: cx, y: base + 18, class: "axis-label", "text-anchor": "middle" }, label));
  });
  const legend = s("g", { class: "legend" });
  legend.append(s("rect", { x: width - 200, y: 8, width: 12, height: 12, class: "legend-online" }), s("text", { x: width - 184, y: 19 }, t("kpi.online")),
    s("rect", { x: width - 110, y: 8, width: 12, height: 12, class: "legend-intact" }), s("text", { x: width - 94, y: 19 }, t("kpi.intact")));
  svg.append(legend);
  return svg;
}

// -- broadcast -------------------------------------------------------------------

/** Wire the broadcast form. */
export function setupBroadcast() {
  document.getElementById("bc-form").addEventListener("submit", (event) => { event.preventDefault(); send(); });
}

function unitStatus(unit) { return tOr(`bc.status.${unit.status}`, unit.status); }
const unitNames = new Map();

/** List the units in scope and fill the target list (units and zones). */
export async function loadUnits() {
  const select = document.getElementById("bc-target");
  const body = document.getElementById("bc-units");
  try {
    const units = await api("/api/broadcast/units");
    for (const u of units) unitNames.set(u.id, u.name || u.id);
    const zones = [...new Set(units.flatMap((u) => u.tags))].sort();
    const chosen = select.value;
    select.replaceChildren(
      ...units.map((u) => h("option", { value: `unit:${u.id}`, text: `${u.name || u.id}（${unitStatus(u)}）` })),
      ...zones.map((z) => h("option", { value: `zone:${z}`, text: t("bc.zone", { z }) })));
    if (chosen) select.value = chosen;
    body.replaceChildren(...units.map((u) => h("tr", { dataset: { unitId: u.id } },
      h("td", {}, h("span", { "data-raw": "name", text: u.name || u.id }), " ", h("small", { class: "muted", "data-raw": "id", text: u.id })),
      h("td", {}, h("span", { "data-raw": "id", text: u.tags.join(", ") })),
      h("td", { class: `health-${u.health} status`, dataset: { status: u.status }, text: unitStatus(u) }))));
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
    result.replaceChildren(...commands.map((c) => h("div", { dataset: { outcome: c.outcome } },
      h("span", { "data-raw": "name", text: unitNames.get(c.unit_id) || c.unit_id }), `：${t(`bc.outcome.${c.outcome}`, { r: c.reason ?? "" })}`)));
  } catch (err) {
    result.textContent = t("common.error", { m: err.message });
  }
}
