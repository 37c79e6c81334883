// Department tasks (中心吹哨、部门报到): the center's lanes on an alarm, a department's own
// queue with its report-in and feedback forms, and the dispatch report with its chart.
//
// The center's lanes follow the alarm stream the queue already holds open: every task change
// is a change of its alarm, the queue re-renders the alarm's detail, and the lanes are
// attached again to the fresh detail and reloaded. A department has no alarm stream (it sees
// no alarm list); its queue reloads every few seconds.
import { api, csrfToken, fill, h } from "./api.js";
import { localTime, onLangChange, t, tOr } from "./i18n.js";

/** Views this module adds to the console. */
export const TASK_VIEWS = ["tasks", "dispatch"];
const CENTER_ROLES = new Set(["operator", "admin"]);
const QUEUE_POLL_MS = 5000;

let role = null;
let departments = [];
let lanesBox = null;
let lanesFor = null;
let lanesLoading = 0;
let observer = null;
let clockTimer = null;
let queueTimer = null;
let chosenTask = null;
const shown = new Map(); // task id -> task, for the ticking clocks

function pad(n) { return String(n).padStart(2, "0"); }

function clock(seconds) {
  const hours = Math.floor(seconds / 3600);
  return `${hours ? `${hours}:` : ""}${pad(Math.floor(seconds / 60) % 60)}:${pad(seconds % 60)}`;
}

/** {text, late} of a task's current stage: time left, or time overdue. */
function clockOf(task, now = Date.now()) {
  if (!task.due) return { text: "", late: false }; // the center's turn, or done
  const diff = Math.round((Date.parse(task.due) - now) / 1000);
  const stage = t(`task.stage.${task.stage}`);
  return diff >= 0
    ? { text: t("task.left", { stage, t: clock(diff) }), late: task.escalation_level > 0 }
    : { text: t("task.late", { stage, t: clock(-diff) }), late: true };
}

function clockCell(task) {
  const { text, late } = clockOf(task);
  return h("span", { class: `task-clock${late ? " late" : ""}`, dataset: { taskClock: task.id }, text });
}

function tick() {
  for (const el of document.querySelectorAll("[data-task-clock]")) {
    const task = shown.get(el.dataset.taskClock);
    if (!task) continue;
    const { text, late } = clockOf(task);
    el.textContent = text;
    el.classList.toggle("late", late);
    el.closest("[data-task-id]")?.classList.toggle("overdue", late);
  }
}

function departmentName(task) { return task.department_name || task.department_id; }

function stateBadge(task) {
  return h("span", { class: `task-state ${task.state}`, dataset: { state: task.state }, text: t(`task.state.${task.state}`) });
}

function badges(task) {
  return [
    task.escalation_level > 0 ? h("span", { class: "task-escalated", text: t(`task.escalated.${task.escalation_level}`) }) : null,
    task.sent_back > 0 ? h("span", { class: "task-sent-back", text: t("task.sent_back", { n: task.sent_back }) }) : null,
  ];
}

function historyLine(entry) {
  return h("li", {},
    h("b", { text: `${localTime(entry.at, true)} ` }),
    h("span", { "data-raw": "actor", text: entry.actor }),
    ` ${tOr(`task.action.${entry.action}`, entry.action)}`,
    entry.action === "escalate" ? ` → ${t(`task.escalated.${entry.details.level}`)}` : "",
    entry.note ? h("span", { class: "note" }, " · ", h("span", { "data-raw": "note", text: entry.note })) : "");
}

// -- the center: lanes on the alarm detail ---------------------------------------------

async function loadDepartments() {
  try { departments = await api("/api/departments"); } catch (err) { departments = []; }
}

async function centerAct(path, body, message) {
  message.textContent = "";
  try {
    await api(path, { method: "POST", body });
    if (lanesFor) await loadLanes(lanesFor);
  } catch (err) {
    message.textContent = t("task.failed", { m: err.message });
  }
}

function lane(task, message) {
  const note = h("input", { name: "note", placeholder: t("task.note_ph") });
  const decide = task.state === "feedback_submitted" ? h("div", { class: "actions" }, note,
    h("button", { class: "primary", dataset: { taskAction: "accept" }, text: t("task.action.accept"),
      onclick: () => centerAct(`/api/tasks/${task.id}/accept`, { note: note.value || null }, message) }),
    h("button", { dataset: { taskAction: "send_back" }, text: t("task.action.send_back"),
      onclick: () => centerAct(`/api/tasks/${task.id}/send_back`, { note: note.value || null }, message) })) : null;
  const row = h("div", { class: "lane", dataset: { taskId: task.id, department: task.department_id, state: task.state } },
    h("div", { class: "lane-head" },
      h("strong", { "data-raw": "name", text: departmentName(task) }), " ", stateBadge(task), " ", clockCell(task), " ", badges(task)),
    h("div", { class: "lane-steps" },
      ["dispatched_at", "reported_in_at", "on_site_at", "feedback_at", "finished_at"].map((name) =>
        h("span", { class: task[name] ? "done" : "todo", text: `${t(`task.at.${name}`)} ${task[name] ? localTime(task[name]) : "—"}` }))),
    task.feedback ? h("p", { class: "lane-feedback" }, `${t("task.feedback")}: `, h("span", { "data-raw": "note", text: task.feedback })) : null,
    h("div", { class: "lane-photos" }),
    decide);
  row.classList.toggle("overdue", clockOf(task).late);
  return row;
}

async function addPhotos(task, row) {
  try {
    const detail = await api(`/api/tasks/${task.id}`);
    const box = row.querySelector(".lane-photos");
    if (box) box.replaceChildren(...detail.photos.map((p) => h("img", { src: p.url, alt: t("task.photos") })));
  } catch (err) {
    console.warn("task photos", err);
  }
}

async function loadLanes(alarmId) {
  const ticket = ++lanesLoading;
  const message = h("p", { class: "error", role: "alert" });
  let tasks;
  try {
    tasks = await api(`/api/tasks/alarms/${alarmId}`);
  } catch (err) {
    if (ticket === lanesLoading) lanesBox.replaceChildren(h("p", { class: "error", text: t("common.error", { m: err.message }) }));
    return;
  }
  if (ticket !== lanesLoading || lanesFor !== alarmId) return;
  for (const task of tasks) shown.set(task.id, task);
  const picker = h("select", { name: "department", "aria-label": t("task.dispatch") },
    departments.filter((d) => d.enabled && !tasks.some((x) => x.department_id === d.id))
      .map((d) => h("option", { value: d.id, text: d.name })));
  const reason = h("input", { name: "reason", placeholder: t("task.reason_ph") });
  const open = tasks.some((x) => x.state !== "accepted" && x.state !== "withdrawn");
  const rows = tasks.map((task) => lane(task, message));
  lanesBox.dataset.alarmId = alarmId;
  lanesBox.dataset.count = String(tasks.length);
  fill(lanesBox,
    h("h4", { text: t("task.lanes") }),
    tasks.length ? h("div", { class: "lanes" }, rows) : h("p", { class: "muted", text: t("task.none") }),
    h("div", { class: "actions" },
      picker,
      h("button", { dataset: { taskAction: "dispatch" }, text: t("task.dispatch"),
        onclick: () => picker.value && centerAct(`/api/tasks/alarms/${alarmId}`, { departments: [picker.value] }, message) }),
      h("button", { dataset: { taskAction: "by_rule" }, text: t("task.by_rule"),
        onclick: () => centerAct(`/api/tasks/alarms/${alarmId}/by-rule`, undefined, message) })),
    open ? h("div", { class: "actions" }, reason,
      h("button", { class: "danger", dataset: { taskAction: "override" }, text: t("task.override"),
        onclick: () => centerAct(`/api/tasks/alarms/${alarmId}/override`, { reason: reason.value }, message) })) : null,
    message);
  tasks.forEach((task, i) => { if (task.feedback_at) addPhotos(task, rows[i]); });
}

function attachLanes(pane) {
  const alarmId = pane.dataset.alarmId;
  if (!alarmId || !CENTER_ROLES.has(role)) return;
  if (lanesBox.isConnected && lanesFor === alarmId) return;
  if (lanesFor !== alarmId) { lanesBox.replaceChildren(); lanesFor = alarmId; }
  pane.append(lanesBox);
  loadLanes(alarmId);
}

// -- a department: its queue, report-in and feedback forms -----------------------------

function queueRow(task) {
  shown.set(task.id, task);
  const row = h("tr", { class: chosenTask === task.id ? "selected" : null, dataset: { taskId: task.id, state: task.state },
    onclick: () => showTask(task.id) },
  h("td", {}, h("span", { class: `prio p${task.priority}`, text: `P${task.priority}` })),
  h("td", { "data-raw": "note", text: task.instructions || "—" }),
  h("td", {}, stateBadge(task)),
  h("td", { text: localTime(task.dispatched_at, true) }),
  h("td", {}, clockCell(task)));
  row.classList.toggle("overdue", clockOf(task).late);
  return row;
}

async function loadQueue() {
  const body = document.getElementById("task-queue-body");
  if (!body) return;
  try {
    const tasks = await api("/api/tasks");
    body.replaceChildren(...tasks.map(queueRow));
    document.getElementById("task-queue-empty").hidden = tasks.length > 0;
    if (chosenTask && document.getElementById("task-detail").dataset.taskId === chosenTask) await showTask(chosenTask, false);
  } catch (err) {
    body.replaceChildren(h("tr", {}, h("td", { class: "error", text: t("common.error", { m: err.message }) })));
  }
}

async function upload(taskId, file) {
  const response = await fetch(`/api/tasks/${taskId}/photos`, {
    method: "POST", credentials: "same-origin", body: file,
    headers: { "Content-Type": file.type || "application/octet-stream", "X-CSRF-Token": csrfToken(), Accept: "application/json" },
  });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new Error(problem.detail || problem.title || `HTTP ${response.status}`);
  }
}

async function departmentAct(taskId, action, body, message) {
  message.textContent = "";
  try {
    await api(`/api/tasks/${taskId}/${action}`, { method: "POST", body });
    await loadQueue();
    await showTask(taskId, false);
  } catch (err) {
    message.textContent = t("task.failed", { m: err.message });
  }
}

function feedbackForm(task, message) {
  const text = h("textarea", { name: "feedback", rows: "3", placeholder: t("task.feedback"), required: true });
  const files = h("input", { name: "photos", type: "file", accept: "image/jpeg,image/png,image/webp", multiple: true });
  return h("form", { class: "task-feedback", onsubmit: async (event) => {
    event.preventDefault();
    message.textContent = "";
    try {
      for (const file of files.files) { message.textContent = t("task.uploading"); await upload(task.id, file); }
      message.textContent = "";
      await departmentAct(task.id, "submit_feedback", { note: text.value }, message);
    } catch (err) {
      message.textContent = t("task.failed", { m: err.message });
    }
  } },
  h("label", {}, h("span", { text: t("task.feedback") }), text),
  h("label", {}, h("span", { text: t("task.photos") }), files),
  h("button", { type: "submit", class: "primary", dataset: { taskAction: "submit_feedback" }, text: t("task.action.submit_feedback") }));
}

async function showTask(taskId, select = true) {
  chosenTask = taskId;
  const pane = document.getElementById("task-detail");
  if (select) for (const row of document.querySelectorAll("#task-queue-body tr")) row.classList.toggle("selected", row.dataset.taskId === taskId);
  let detail;
  try {
    detail = await api(`/api/tasks/${taskId}`);
  } catch (err) {
    pane.replaceChildren(h("p", { class: "error", text: t("common.error", { m: err.message }) }));
    return;
  }
  const task = detail.task;
  const alarm = detail.alarm;
  shown.set(task.id, task);
  const message = h("p", { class: "error", role: "alert" });
  const buttons = detail.allowed.filter((a) => a === "report_in" || a === "arrive").map((action) =>
    h("button", { class: "primary", dataset: { taskAction: action }, text: t(`task.action.${action}`),
      onclick: () => departmentAct(task.id, action, undefined, message) }));
  const where = alarm.location
    ? `${alarm.location.description || ""} (${alarm.location.latitude.toFixed(5)}, ${alarm.location.longitude.toFixed(5)})`
    : alarm.jurisdiction || "—";
  pane.dataset.taskId = task.id;
  pane.dataset.state = task.state;
  fill(pane,
    h("h3", {}, h("span", { class: `prio p${alarm.priority}`, text: `P${alarm.priority}` }), " ", h("span", { "data-raw": "title", text: alarm.title })),
    h("dl", {},
      h("dt", { text: t("queue.state") }), h("dd", {}, stateBadge(task), " ", clockCell(task), " ", badges(task)),
      h("dt", { text: t("task.location") }), h("dd", { "data-raw": "location", text: where }),
      h("dt", { text: t("queue.opened") }), h("dd", { text: localTime(alarm.opened_at, true) }),
      h("dt", { text: t("task.instructions") }), h("dd", { "data-raw": "note", text: task.instructions || "—" })),
    h("div", { class: "actions" }, buttons),
    detail.allowed.includes("submit_feedback") ? feedbackForm(task, message) : null,
    message,
    h("h4", { text: t("detail.sop") }), h("div", { class: "sop", "data-raw": "sop", text: alarm.sop || "—" }),
    h("h4", { text: t("detail.snapshots") }),
    h("div", { class: "media" }, alarm.snapshots.length
      ? alarm.snapshots.map((url) => h("img", { src: url, alt: t("detail.snapshots") }))
      : h("span", { class: "muted", text: t("detail.nosnap") })),
    detail.photos.length ? h("h4", { text: t("task.photos") }) : null,
    detail.photos.length ? h("div", { class: "media" }, detail.photos.map((p) => h("img", { src: p.url, alt: t("task.photos") }))) : null,
    h("h4", { text: t("task.history") }),
    h("ol", { class: "history" }, detail.history.map(historyLine)));
}

// -- the dispatch report ---------------------------------------------------------------

function percent(value) { return value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)}%`; }
function seconds(value) { return value === null || value === undefined ? "—" : t("report.seconds", { s: Math.round(value) }); }

function reportTable(rows, group) {
  return h("table", { class: "report", dataset: { group } },
    h("thead", {}, h("tr", {}, [group === "department" ? "report.department" : "report.town",
      "report.received", "report.p50", "report.p90", "report.on_time", "report.sent_back"].map((k) => h("th", { text: t(k) })))),
    h("tbody", {}, rows.map((r) => h("tr", { dataset: { code: r.code } },
      h("td", { "data-raw": "name", text: r.name }), h("td", { text: String(r.received) }),
      h("td", { text: seconds(r.report_in_p50_s) }), h("td", { text: seconds(r.report_in_p90_s) }),
      h("td", { text: percent(r.on_time_rate) }), h("td", { text: percent(r.sent_back_rate) })))));
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  for (const child of children) el.append(child);
  return el;
}

/** Bars of on-time rate (green) and sent-back rate (orange) per department. */
function reportChart(rows) {
  const barH = 12;
  const rowH = 34;
  const left = 140;
  const width = 520;
  const chart = svg("svg", { class: "report-chart", viewBox: `0 0 ${left + width + 60} ${rows.length * rowH + 10}`, role: "img", "aria-label": t("report.chart") });
  rows.forEach((r, i) => {
    const y = i * rowH + 6;
    const label = svg("text", { x: 0, y: y + barH + 2, class: "label" });
    label.textContent = r.name;
    chart.append(label);
    for (const [j, key, cls] of [[0, "on_time_rate", "on-time"], [1, "sent_back_rate", "sent-back"]]) {
      const value = r[key] ?? 0;
      chart.append(svg("rect", { x: left, y: y + j * (barH + 2), width: Math.max(1, value * width), height: barH, class: cls, "data-code": r.code, "data-value": value }));
      const text = svg("text", { x: left + value * width + 4, y: y + j * (barH + 2) + barH - 2, class: "value" });
      text.textContent = percent(r[key]);
      chart.append(text);
    }
  });
  return chart;
}

async function loadReport() {
  const form = document.getElementById("dispatch-form");
  const out = document.getElementById("dispatch-out");
  if (!form || !out) return;
  const kind = form.elements.kind.value;
  const value = form.elements.when.value;
  if (!value) return;
  const query = `${kind}=${encodeURIComponent(value)}`;
  try {
    const report = await api(`/api/reports/dispatch?${query}`);
    fill(out,
      h("p", {},
        h("a", { href: `/api/reports/dispatch?${query}&format=csv`, download: `dispatch-${value}.csv`, text: t("report.csv") }), " · ",
        h("a", { href: `/api/reports/dispatch?${query}&format=xlsx`, text: t("report.xlsx") })),
      report.departments.length ? h("h4", { text: t("report.chart") }) : h("p", { class: "muted", text: t("report.empty") }),
      report.departments.length ? reportChart(report.departments) : null,
      report.departments.length ? reportTable(report.departments, "department") : null,
      report.towns.length ? reportTable(report.towns, "town") : null);
  } catch (err) {
    out.replaceChildren(h("p", { class: "error", text: t("common.error", { m: err.message }) }));
  }
}

function currentMonth() {
  const now = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit" }).format(new Date());
  return now.slice(0, 7);
}

// -- wiring ----------------------------------------------------------------------------

function buildViews() {
  const main = document.querySelector("main");
  const nav = document.getElementById("nav");
  if (!main || !nav || document.getElementById("tasks-view")) return;
  nav.append(
    h("button", { dataset: { view: "tasks", i18n: "nav.tasks" }, text: t("nav.tasks") }),
    h("button", { dataset: { view: "dispatch", i18n: "nav.dispatch" }, text: t("nav.dispatch") }));
  main.append(
    h("section", { id: "tasks-view", class: "view split", hidden: true },
      h("div", { class: "pane" },
        h("h2", { dataset: { i18n: "task.queue" }, text: t("task.queue") }),
        h("table", { class: "queue" },
          h("thead", {}, h("tr", {}, ["queue.priority", "task.instructions", "queue.state", "task.at.dispatched_at", "queue.sla"]
            .map((k) => h("th", { dataset: { i18n: k }, text: t(k) })))),
          h("tbody", { id: "task-queue-body" })),
        h("p", { id: "task-queue-empty", class: "muted", dataset: { i18n: "task.queue_empty" }, text: t("task.queue_empty"), hidden: true })),
      h("div", { class: "pane detail", id: "task-detail" }, h("p", { class: "muted", dataset: { i18n: "task.pick" }, text: t("task.pick") }))),
    h("section", { id: "dispatch-view", class: "view", hidden: true },
      h("h2", { dataset: { i18n: "report.title" }, text: t("report.title") }),
      h("form", { id: "dispatch-form", class: "actions", onsubmit: (event) => { event.preventDefault(); loadReport(); } },
        h("select", { name: "kind", "aria-label": t("report.title") },
          h("option", { value: "month", dataset: { i18n: "report.month" }, text: t("report.month") }),
          h("option", { value: "week", dataset: { i18n: "report.week" }, text: t("report.week") })),
        h("input", { name: "when", value: currentMonth(), placeholder: "2026-11 / 2026-W47", "aria-label": t("report.title") }),
        h("button", { type: "submit", dataset: { i18n: "report.show" }, text: t("report.show") })),
      h("div", { id: "dispatch-out" })));
}

/** Add the task views and their nav buttons (before the console binds its nav buttons). */
export function setupTasks() {
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = "/console/tasks.css";
  document.head.append(link);
  buildViews();
  lanesBox = h("section", { id: "task-lanes", class: "task-lanes" });
  const pane = document.getElementById("detail");
  if (pane) {
    observer = new MutationObserver(() => attachLanes(pane));
    observer.observe(pane, { childList: true });
  }
  onLangChange(() => {
    if (lanesFor && lanesBox.isConnected) loadLanes(lanesFor);
    if (document.getElementById("tasks-view") && !document.getElementById("tasks-view").hidden) loadQueue();
    if (chosenTask && role === "department") showTask(chosenTask, false);
  });
}

/** Start for a signed-in user: the center gets lanes and the report, a department its queue. */
export async function startTasks(identity) {
  role = identity.role;
  const nav = document.getElementById("nav");
  const department = role === "department";
  for (const button of nav.querySelectorAll("button")) {
    const view = button.dataset.view;
    if (view === "tasks") button.hidden = !department;
    else if (view === "dispatch") button.hidden = !CENTER_ROLES.has(role) && role !== "auditor";
    else button.hidden = department;
  }
  clearInterval(clockTimer);
  clockTimer = setInterval(tick, 1000);
  if (department) {
    clearInterval(queueTimer);
    queueTimer = setInterval(() => { if (!document.getElementById("tasks-view").hidden) loadQueue(); }, QUEUE_POLL_MS);
  } else if (CENTER_ROLES.has(role)) {
    await loadDepartments();
  }
}

/** Forget everything (logout). */
export function stopTasks() {
  role = null;
  clearInterval(clockTimer);
  clearInterval(queueTimer);
  shown.clear();
  chosenTask = null;
  lanesFor = null;
  if (lanesBox) lanesBox.replaceChildren();
  for (const button of document.querySelectorAll("#nav button")) button.hidden = false;
}

/** Loaders of the views this module adds. */
export const taskLoaders = { tasks: loadQueue, dispatch: loadReport };
