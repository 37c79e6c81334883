// The live alarm queue (WebSocket with replay on reconnect) and the alarm detail.
import { api, h } from "./api.js";
import { t, localTime, onLangChange } from "./i18n.js";
import { setAlerting } from "./sound.js";
import { startLive } from "./live.js";

const ACTIVE = new Set(["new", "acknowledged", "dispatched"]);
const queue = new Map();
let lastSeq = null;
let socket = null;
let retries = 0;
let selected = null;
let stopVideo = null;
let reconnectTimer = null;
let running = false;

/** Start the queue: open the stream, load the open alarms, tick the SLA clocks. */
export async function startQueue() {
  running = true;
  connect();
  await reload();
  setInterval(tickSla, 1000);
  onLangChange(() => { render(); if (selected) showDetail(selected); });
}

/** Stop the stream (logout). */
export function stopQueue() {
  running = false;
  clearTimeout(reconnectTimer);
  if (socket) socket.close();
  socket = null;
  queue.clear();
  setAlerting(false);
}

async function reload() {
  const params = new URLSearchParams([["state", "new"], ["state", "acknowledged"], ["state", "dispatched"], ["limit", "500"]]);
  const page = await api(`/api/alarms?${params}`);
  queue.clear();
  for (const alarm of page.items) queue.set(alarm.id, alarm);
  render();
}

function setConn(up) {
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
      update(detail.alarm);
      if (selected === alarmId) renderDetail(detail, false);
    } catch (err) {
      if (err.status === 404) { queue.delete(alarmId); render(); }
      else console.warn("refresh alarm", err);
    }
  }, 50));
}

function update(alarm) {
  if (ACTIVE.has(alarm.state)) queue.set(alarm.id, alarm);
  else queue.delete(alarm.id);
  render();
}

function ordered() {
  return [...queue.values()].sort((a, b) =>
    a.priority - b.priority || Date.parse(a.opened_at) - Date.parse(b.opened_at));
}

function slaText(alarm, now = Date.now()) {
  const due = alarm.state === "new" ? alarm.ack_due : alarm.resolve_due;
  if (!due) return { text: "", late: false };
  const diff = Math.round((Date.parse(due) - now) / 1000);
  const abs = Math.abs(diff);
  const pad = (n) => String(n).padStart(2, "0");
  const hours = Math.floor(abs / 3600);
  const clock = `${hours ? `${hours}:` : ""}${pad(Math.floor(abs / 60) % 60)}:${pad(abs % 60)}`;
  return diff >= 0 ? { text: t("sla.left", { t: clock }), late: false } : { text: t("sla.late", { t: clock }), late: true };
}

// A P1 drill sounds like a real P1: a drill exercises the real path, the
// operator's reaction included. The 演练/DRILL badge (row and detail) is what
// tells it apart, so nobody dispatches police to a drill.
function sounds(alarm) { return alarm.priority === 1 && alarm.state === "new"; }

function drillBadge(alarm) {
  return alarm.is_drill ? h("span", { class: "drill-badge", title: t("drill.note"), text: t("drill.badge") }) : null;
}

function render() {
  const body = document.getElementById("queue-body");
  const rows = ordered().map((alarm) => {
    const sla = slaText(alarm);
    const sound = sounds(alarm);
    return h("tr", {
      dataset: { alarmId: alarm.id, priority: String(alarm.priority), state: alarm.state, sound: sound ? "on" : "off", drill: alarm.is_drill ? "true" : "false" },
      class: [alarm.id === selected ? "selected" : "", alarm.is_drill ? "drill" : ""].join(" ").trim() || null,
      onclick: () => showDetail(alarm.id),
    },
    h("td", {}, h("span", { class: `prio prio-${alarm.priority}`, text: `P${alarm.priority}` })),
    h("td", {}, h("div", {}, drillBadge(alarm), alarm.title), h("small", { class: "muted", text: `${alarm.device_id}${alarm.count > 1 ? ` ×${alarm.count}` : ""}` })),
    h("td", { class: "state", text: t(`state.${alarm.state}`) }),
    h("td", { text: localTime(alarm.opened_at) }),
    h("td", { class: `sla${sla.late ? " late" : ""}`, dataset: { due: alarm.state === "new" ? alarm.ack_due ?? "" : alarm.resolve_due ?? "" }, text: sla.text }));
  });
  body.replaceChildren(...rows);
  document.getElementById("queue-empty").hidden = rows.length > 0;
  document.getElementById("queue-count").textContent = rows.length ? `(${rows.length})` : "";
  setAlerting(ordered().some(sounds));
}

function tickSla() {
  const now = Date.now();
  for (const row of document.querySelectorAll("#queue-body tr")) {
    const alarm = queue.get(row.dataset.alarmId);
    if (!alarm) continue;
    const cell = row.lastElementChild;
    const sla = slaText(alarm, now);
    cell.textContent = sla.text;
    cell.classList.toggle("late", sla.late);
  }
}

/** Open an alarm's detail (SOP, snapshots, live video, history, actions). */
export async function showDetail(alarmId) {
  if (selected !== alarmId && stopVideo) { await stopVideo(); stopVideo = null; }
  selected = alarmId;
  render();
  const pane = document.getElementById("detail");
  try {
    renderDetail(await api(`/api/alarms/${alarmId}`), true);
  } catch (err) {
    pane.replaceChildren(h("p", { class: "error", text: t("common.error", { m: err.message }) }));
  }
}

function renderDetail(detail, withVideo) {
  const pane = document.getElementById("detail");
  const a = detail.alarm;
  const keepVideo = !withVideo ? pane.querySelector(".live-block") : null;
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
      renderDetail(await api(`/api/alarms/${a.id}`), false);
    } catch (err) {
      message.textContent = t("action.failed", { m: err.message });
    }
  };
  const sla = slaText(a);
  pane.replaceChildren(...[
    h("h3", {}, h("span", { class: `prio prio-${a.priority}`, text: `P${a.priority}` }), " ", drillBadge(a), a.title),
    a.is_drill ? h("p", { class: "drill-note", role: "note", text: t("drill.note") }) : null,
    h("dl", {},
      h("dt", { text: t("queue.state") }), h("dd", { class: "detail-state", text: t(`state.${a.state}`) }),
      h("dt", { text: t("detail.device") }), h("dd", { text: a.device_id }),
      h("dt", { text: t("detail.jurisdiction") }), h("dd", { text: a.jurisdiction ?? "" }),
      h("dt", { text: t("queue.opened") }), h("dd", { text: localTime(a.opened_at, true) }),
      h("dt", { text: t("detail.count") }), h("dd", { text: String(a.count) }),
      h("dt", { text: t("queue.sla") }), h("dd", { class: `sla${sla.late ? " late" : ""}`, text: sla.text }),
      h("dt", { text: t("detail.assignee") }), h("dd", { text: [a.assignee, a.department].filter(Boolean).join(" / ") })),
    h("div", { class: "actions" }, note,
      a.allowed_actions.some((x) => x === "assign" || x === "dispatch") ? [assignee, department] : []),
    h("div", { class: "actions" }, a.allowed_actions.map((action) =>
      h("button", { class: action === "acknowledge" ? "primary" : null, dataset: { action }, text: t(`action.${action}`), onclick: () => act(action) }))),
    message,
    h("h4", { text: t("detail.sop") }), h("div", { class: "sop", text: a.sop || "—" }),
    h("h4", { text: t("detail.snapshots") }),
    h("div", { class: "media" }, detail.media.length
      ? detail.media.map((m) => h("img", { src: m.url, alt: `${m.device_id} ${localTime(m.taken_at)}` }))
      : h("span", { class: "muted", text: t("detail.nosnap") })),
    keepVideo || liveBlock(a),
    h("h4", { text: t("detail.history") }),
    h("ol", { class: "history" }, detail.history.map((entry) =>
      h("li", {}, h("b", { text: `${localTime(entry.at, true)} ${entry.actor}` }), ` ${t(`action.${entry.action}`) === `action.${entry.action}` ? entry.action : t(`action.${entry.action}`)}`,
        entry.to_state ? ` → ${t(`state.${entry.to_state}`)}` : "", entry.note ? ` · ${entry.note}` : ""))),
    detail.deliveries.length ? h("h4", { text: t("detail.deliveries") }) : null,
    detail.deliveries.length ? h("ul", { class: "history" }, detail.deliveries.map((d) =>
      h("li", { text: `${d.sink} r${d.revision}: ${d.state}${d.last_error ? ` (${d.last_error})` : ""}` }))) : null,
  ].filter(Boolean));
}

function liveBlock(alarm) {
  const block = h("div", { class: "live-block" }, h("h4", { text: t("detail.live") }));
  const video = h("video", { class: "live", muted: true, autoplay: true, playsinline: true });
  video.muted = true;
  const status = h("p", { class: "muted live-status" });
  const buttons = h("div", { class: "actions" });
  block.append(buttons, video, status);
  cameras(alarm.device_id).then((ids) => {
    if (!ids.length) { status.textContent = t("detail.nocam"); return; }
    for (const id of ids) {
      buttons.append(h("button", { dataset: { camera: id }, text: t("detail.watch", { id }), onclick: async () => {
        if (stopVideo) { await stopVideo(); stopVideo = null; }
        status.textContent = t("live.connecting");
        try {
          stopVideo = await startLive(video, id);
          status.textContent = id;
        } catch (err) {
          status.textContent = t("live.failed", { m: err.message });
        }
      } }));
    }
    buttons.append(h("button", { text: t("detail.stop"), onclick: async () => { if (stopVideo) { await stopVideo(); stopVideo = null; } } }));
  });
  return block;
}

async function cameras(deviceId) {
  try {
    const device = await api(`/api/devices/${encodeURIComponent(deviceId)}`);
    if (device.kind === "camera") return [device.id];
    return device.linked_cameras || [];
  } catch (err) {
    return [];
  }
}
