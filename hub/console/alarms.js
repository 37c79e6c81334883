// The live alarm queue (WebSocket with replay on reconnect) and the alarm detail.
import { api, h } from "./api.js";
import { t, tOr, localTime, onLangChange } from "./i18n.js";
import { setAlerting } from "./sound.js";
import { startLive } from "./live.js";
import { evidenceBlock } from "./evidence.js";
import { actorName, alarmSop, alarmTitle, device, deviceName, jurisdictionName, loadJurisdictions } from "./names.js";
import { slaOf, noteHistory } from "./sla.js";

const ACTIVE = new Set(["new", "acknowledged", "dispatched"]);
const queue = new Map();
const queueListeners = new Set();
const newAlarmListeners = new Set();
const seen = new Set();
let lastSeq = null;
let socket = null;
let retries = 0;
let selected = null;
let shownDetail = null;
let live = null; // {alarmId, block, video, status, buttons, cameras, cameraId, stop}
let reconnectTimer = null;
let slaTimer = null;
let running = false;
let connUp = null;
let langHooked = false;

/** Start the queue: open the stream, load the open alarms, tick the SLA clocks. */
export async function startQueue() {
  running = true;
  loadJurisdictions().then(() => { render(); if (shownDetail) renderDetail(shownDetail, false); });
  connect();
  await reload();
  clearInterval(slaTimer);
  slaTimer = setInterval(tickSla, 1000);
  if (!langHooked) {
    langHooked = true;
    onLangChange(() => {
      if (connUp !== null) setConn(connUp);
      render();
      if (shownDetail) renderDetail(shownDetail, false);
    });
  }
}

/** Stop the stream (logout). */
export function stopQueue() {
  running = false;
  clearTimeout(reconnectTimer);
  clearInterval(slaTimer);
  if (socket) socket.close();
  socket = null;
  queue.clear();
  seen.clear();
  connUp = null;
  stopLiveView();
  setAlerting(false);
}

/** The open alarms the console holds, most urgent first. */
export function queueAlarms() { return ordered(); }

/** Call `fn(alarms)` whenever the queue changes (the map pins them). */
export function onQueueChange(fn) { queueListeners.add(fn); }

/** Call `fn(alarm)` once for every alarm that arrives while the console is open. */
export function onNewAlarm(fn) { newAlarmListeners.add(fn); }

async function reload() {
  const params = new URLSearchParams([["state", "new"], ["state", "acknowledged"], ["state", "dispatched"], ["limit", "500"]]);
  const page = await api(`/api/alarms?${params}`);
  queue.clear();
  for (const alarm of page.items) { queue.set(alarm.id, alarm); seen.add(alarm.id); }
  render();
  // A hub without first deadlines in its API: read them from the escalation history.
  for (const alarm of page.items) if (alarm.escalation_level > 0 && !("ack_due_first" in alarm)) refresh(alarm.id);
}

function setConn(up) {
  connUp = up;
  const el = document.getElementById("conn");
  el.hidden = false;
  el.className = `conn ${up ? "up" : "down"}`;
  el.textContent = t(up ? "conn.up" : "conn.down");
  el.dataset.state = up ? "up" : "down";
}

function connect() {
  if (!running) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const since = lastSeq === null ? "" : `?since=${lastSeq}`;
  const ws = new WebSocket(`${scheme}://${location.host}/api/alarms/ws${since}`);
  socket = ws;
  ws.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "hello") {
      setConn(true);
      retries = 0;
      if (lastSeq === null) lastSeq = message.cursor;
    } else if (message.type === "change") {
      lastSeq = Math.max(lastSeq ?? 0, message.seq);
      refresh(message.alarm_id);
    } else if (message.type === "resync") {
      // We fell behind the live feed: reload everything, then follow from the new cursor.
      lastSeq = null;
      reload();
    }
  });
  ws.addEventListener("close", () => {
    if (socket !== ws) return;
    setConn(false);
    if (!running) return;
    const delay = Math.min(15000, 500 * 2 ** retries++);
    reconnectTimer = setTimeout(connect, delay);
  });
}

const pending = new Map();
function refresh(alarmId) {
  if (pending.has(alarmId)) return;
  pending.set(alarmId, setTimeout(async () => {
    pending.delete(alarmId);
    try {
      const detail = await api(`/api/alarms/${alarmId}`);
      noteHistory(detail.alarm, detail.history);
      update(detail.alarm);
      if (selected === alarmId) renderDetail(detail, false);
    } catch (err) {
      if (err.status === 404) { queue.delete(alarmId); render(); }
      else console.warn("refresh alarm", err);
    }
  }, 50));
}

function update(alarm) {
  const fresh = !seen.has(alarm.id);
  seen.add(alarm.id);
  if (ACTIVE.has(alarm.state)) queue.set(alarm.id, alarm);
  else queue.delete(alarm.id);
  render();
  if (fresh) for (const fn of newAlarmListeners) fn(alarm);
}

function ordered() {
  return [...queue.values()].sort((a, b) =>
    a.priority - b.priority || Date.parse(a.opened_at) - Date.parse(b.opened_at));
}

// A P1 drill sounds like a real P1: a drill exercises the real path, the
// operator's reaction included. The 演练/DRILL badge (row and detail) is what
// tells it apart, so nobody dispatches police to a drill.
function sounds(alarm) { return alarm.priority === 1 && alarm.state === "new"; }

function drillBadge(alarm) {
  return alarm.is_drill ? h("span", { class: "drill-badge", title: t("drill.note"), text: t("drill.badge") }) : null;
}

function prioBadge(alarm) {
  return h("span", { class: `prio prio-${alarm.priority}`, text: t(`prio.${alarm.priority}`) });
}

/** The SLA cell's content: the countdown or the time overdue, and the escalation level. */
function slaContent(alarm, now = Date.now()) {
  const sla = slaOf(alarm, now);
  const parts = [];
  if (sla.text) parts.push(h("span", { class: "sla-clock", text: sla.text }));
  if (sla.level > 0) parts.push(h("span", { class: "esc", dataset: { level: String(sla.level) }, text: t("sla.escalated", { n: sla.level }) }));
  return { sla, parts };
}

function slaCell(alarm, tag = "td") {
  const { sla, parts } = slaContent(alarm);
  return h(tag, { class: `sla${sla.late ? " late" : ""}`, dataset: { due: sla.due ?? "", late: sla.late ? "true" : "false", escalation: String(sla.level) } }, parts);
}

function render() {
  const body = document.getElementById("queue-body");
  const rows = ordered().map((alarm) => {
    const sound = sounds(alarm);
    return h("tr", {
      dataset: { alarmId: alarm.id, priority: String(alarm.priority), state: alarm.state, sound: sound ? "on" : "off", drill: alarm.is_drill ? "true" : "false" },
      class: [alarm.id === selected ? "selected" : "", alarm.is_drill ? "drill" : ""].join(" ").trim() || null,
      onclick: () => showDetail(alarm.id),
    },
    h("td", {}, prioBadge(alarm)),
    h("td", {}, h("div", {}, drillBadge(alarm), alarmTitle(alarm)),
      h("small", { class: "muted" }, h("span", { class: "raw", "data-raw": "id", text: alarm.device_id }),
        alarm.count > 1 ? ` ×${alarm.count}` : "",
        alarm.jurisdiction ? ` · ${jurisdictionName(alarm.jurisdiction)}` : "")),
    h("td", { class: "state", text: t(`state.${alarm.state}`) }),
    h("td", { class: "opened", text: localTime(alarm.opened_at) }),
    slaCell(alarm));
  });
  body.replaceChildren(...rows);
  document.getElementById("queue-empty").hidden = rows.length > 0;
  document.getElementById("queue-count").textContent = rows.length ? `(${rows.length})` : "";
  setAlerting(ordered().some(sounds));
  const alarms = ordered();
  for (const fn of queueListeners) fn(alarms);
}

function tickSla() {
  const now = Date.now();
  for (const row of document.querySelectorAll("#queue-body tr")) {
    const alarm = queue.get(row.dataset.alarmId);
    if (!alarm) continue;
    const cell = row.lastElementChild;
    const { sla, parts } = slaContent(alarm, now);
    cell.replaceChildren(...parts);
    cell.classList.toggle("late", sla.late);
    cell.dataset.late = sla.late ? "true" : "false";
  }
  const detailSla = document.querySelector("#detail dd.sla");
  const shown = shownDetail?.alarm;
  if (detailSla && shown) {
    const { sla, parts } = slaContent(queue.get(shown.id) ?? shown, now);
    detailSla.replaceChildren(...parts);
    detailSla.classList.toggle("late", sla.late);
  }
}

function stopLiveView() {
  const current = live;
  live = null;
  if (current?.stop) return current.stop();
  return Promise.resolve();
}

/** Open an alarm's detail (SOP, snapshots, live video, history, actions); `play` starts its
 *  first camera at once (a pin clicked on the map). */
export async function showDetail(alarmId, { play = false } = {}) {
  if (selected !== alarmId) { await stopLiveView(); shownDetail = null; }
  selected = alarmId;
  render();
  const pane = document.getElementById("detail");
  try {
    const detail = await api(`/api/alarms/${alarmId}`);
    noteHistory(detail.alarm, detail.history);
    renderDetail(detail, true);
    if (play && live && live.alarmId === alarmId) {
      const cameras = await live.cameras;
      if (cameras.length && !live.cameraId) await watch(cameras[0]);
    }
  } catch (err) {
    pane.replaceChildren(h("p", { class: "error", text: t("common.error", { m: err.message }) }));
  }
}

// Notes the hub writes itself, in the console's language (an operator's own note is shown as written).
function systemNote(entry) {
  if (entry.actor === "system" && entry.action === "auto_close") {
    const kind = entry.details?.event_kind || "";
    return t("history.note.recovered", { kind: tOr(`event.${kind}`, kind) });
  }
  if (entry.actor === "system:drill") return t("history.note.drill");
  return null;
}

function historyLine(entry) {
  const own = systemNote(entry);
  return h("li", {},
    h("b", {}, `${localTime(entry.at, true)} `, h("span", { class: "actor", text: actorName(entry.actor) })),
    ` ${tOr(`action.${entry.action}`, entry.action)}`,
    entry.to_state && entry.from_state !== entry.to_state ? ` → ${t(`state.${entry.to_state}`)}` : "",
    own ? h("span", { class: "note", title: entry.note || null }, ` · ${own}`)
      : entry.note ? h("span", { class: "note" }, " · ", h("span", { "data-raw": "note", text: entry.note })) : "");
}

function renderDetail(detail, withVideo) {
  shownDetail = detail;
  const pane = document.getElementById("detail");
  const a = detail.alarm;
  pane.dataset.alarmId = a.id;
  pane.dataset.state = a.state;
  pane.dataset.drill = a.is_drill ? "true" : "false";
  const note = h("input", { name: "note", placeholder: t("detail.note") });
  const assignee = h("input", { name: "assignee", placeholder: t("detail.assignee_ph"), value: a.assignee ?? "" });
  const department = h("input", { name: "department", placeholder: t("detail.department_ph"), value: a.department ?? "" });
  const message = h("p", { class: "error", role: "alert" });
  const act = async (action) => {
    message.textContent = "";
    const body = { note: note.value || null };
    if (action === "assign" || action === "dispatch") {
      body.assignee = assignee.value || null;
      body.department = department.value || null;
    }
    try {
      const updated = await api(`/api/alarms/${a.id}/${action}`, { method: "POST", body });
      update(updated);
      const fresh = await api(`/api/alarms/${a.id}`);
      noteHistory(fresh.alarm, fresh.history);
      renderDetail(fresh, false);
    } catch (err) {
      message.textContent = t("action.failed", { m: err.message });
    }
  };
  const reuse = live && live.alarmId === a.id && (!withVideo || live.block.isConnected);
  const block = reuse ? relabelLive() : liveBlock(a);
  pane.replaceChildren(...[
    h("h3", {}, prioBadge(a), " ", drillBadge(a), alarmTitle(a)),
    a.is_drill ? h("p", { class: "drill-note", role: "note", text: t("drill.note") }) : null,
    h("dl", {},
      h("dt", { text: t("queue.state") }), h("dd", { class: "detail-state", text: t(`state.${a.state}`) }),
      h("dt", { text: t("detail.device") }), h("dd", {}, h("span", { "data-raw": "name", text: deviceName(a.device_id) }), " ",
        h("small", { class: "muted", "data-raw": "id", text: a.device_id })),
      h("dt", { text: t("detail.jurisdiction") }), h("dd", { class: "jurisdiction", text: jurisdictionName(a.jurisdiction) }),
      h("dt", { text: t("queue.opened") }), h("dd", { text: localTime(a.opened_at, true) }),
      h("dt", { text: t("detail.count") }), h("dd", { text: String(a.count) }),
      h("dt", { text: t("queue.sla") }), slaCell(queue.get(a.id) ?? a, "dd"),
      h("dt", { text: t("detail.assignee") }), h("dd", { "data-raw": "name", text: [a.assignee, a.department].filter(Boolean).join(" / ") })),
    h("div", { class: "actions" }, note,
      a.allowed_actions.some((x) => x === "assign" || x === "dispatch") ? [assignee, department] : []),
    h("div", { class: "actions" }, a.allowed_actions.map((action) =>
      h("button", { class: action === "acknowledge" ? "primary" : null, dataset: { action }, text: t(`action.${action}`), onclick: () => act(action) }))),
    message,
    h("h4", { text: t("detail.sop") }), h("div", { class: "sop", text: alarmSop(a) || t("common.none") }),
    h("h4", { text: t("detail.snapshots") }),
    h("div", { class: "media" }, detail.media.length
      ? detail.media.map((m) => h("img", { src: m.url, alt: `${deviceName(m.device_id)} ${localTime(m.taken_at)}` }))
      : h("span", { class: "muted", text: t("detail.nosnap") })),
    block,
    evidenceBlock(a),
    h("h4", { text: t("detail.history") }),
    h("ol", { class: "history" }, detail.history.map(historyLine)),
    detail.deliveries.length ? h("h4", { text: t("detail.deliveries") }) : null,
    detail.deliveries.length ? h("ul", { class: "history" }, detail.deliveries.map((d) =>
      h("li", {}, t("delivery.line", { sink: d.sink, r: d.revision, state: tOr(`delivery.${d.state}`, d.state) }),
        d.last_error ? h("span", { "data-raw": "error", text: ` (${d.last_error})` }) : ""))) : null,
  ].filter(Boolean));
  device(a.device_id).then((found) => {
    if (!found || shownDetail !== detail) return;
    const name = pane.querySelector("dd [data-raw=name]");
    if (name) name.textContent = found.name || a.device_id;
  });
}

async function watch(cameraId) {
  const current = live;
  if (!current) return;
  if (current.stop) { const stop = current.stop; current.stop = null; await stop(); }
  current.cameraId = cameraId;
  current.status.textContent = t("live.connecting");
  current.status.dataset.state = "connecting";
  try {
    const stop = await startLive(current.video, cameraId);
    if (live !== current) { await stop(); return; }
    current.stop = stop;
    current.status.dataset.state = "playing";
    relabelLive();
  } catch (err) {
    current.cameraId = null;
    current.status.dataset.state = "failed";
    current.status.textContent = t("live.failed", { m: err.message });
  }
}

function relabelLive() {
  const current = live;
  current.title.textContent = t("detail.live");
  for (const button of current.buttons.querySelectorAll("button[data-camera]")) {
    button.textContent = t("detail.watch", { name: deviceName(button.dataset.camera) });
  }
  const stop = current.buttons.querySelector("button.stop");
  if (stop) stop.textContent = t("detail.stop");
  const wall = current.buttons.querySelector("button.to-wall");
  if (wall) wall.textContent = t("detail.to_wall");
  if (current.status.dataset.state === "playing") current.status.textContent = deviceName(current.cameraId);
  else if (current.status.dataset.state === "none") current.status.textContent = t("detail.nocam");
  else if (current.status.dataset.state === "connecting") current.status.textContent = t("live.connecting");
  return current.block;
}

function liveBlock(alarm) {
  const title = h("h4", { text: t("detail.live") });
  const block = h("div", { class: "live-block" }, title);
  const video = h("video", { class: "live", muted: true, autoplay: true, playsinline: true });
  video.muted = true;
  const status = h("p", { class: "muted live-status" });
  const buttons = h("div", { class: "actions" });
  block.append(buttons, video, status);
  const current = { alarmId: alarm.id, block, title, video, status, buttons, cameraId: null, stop: null };
  current.cameras = cameras(alarm.device_id).then((ids) => {
    if (!ids.length) { status.dataset.state = "none"; status.textContent = t("detail.nocam"); return ids; }
    for (const id of ids) {
      buttons.append(h("button", { dataset: { camera: id }, text: t("detail.watch", { name: deviceName(id) }), onclick: () => watch(id) }));
    }
    buttons.append(h("button", { class: "stop", text: t("detail.stop"), onclick: async () => {
      if (current.stop) { const stop = current.stop; current.stop = null; current.cameraId = null; status.dataset.state = ""; status.textContent = ""; await stop(); }
    } }));
    buttons.append(h("button", { class: "to-wall", text: t("detail.to_wall"), onclick: () => {
      document.dispatchEvent(new CustomEvent("gw:wall", { detail: { cameras: ids, title: alarmTitle(alarm) } }));
    } }));
    return ids;
  });
  live = current;
  return block;
}

/** The cameras that show an alarm's device: itself (a camera) or its linked cameras, named. */
export async function cameras(deviceId) {
  const found = await device(deviceId);
  if (!found) return [];
  const ids = found.kind === "camera" ? [found.id] : found.linked_cameras || [];
  await Promise.all(ids.map((id) => device(id)));
  return ids;
}
