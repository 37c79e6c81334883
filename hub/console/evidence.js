// Evidence clips in the alarm detail: each linked camera's MP4 from before the press to
// after the post-roll, starting at the press (scrub back to see what led up to it).
import { api, h } from "./api.js";
import { onLangChange, t } from "./i18n.js";
import { deviceName } from "./names.js";

const POLL_MS = 3000;
let shown = null; // {alarmId, block, list, key, timer}

function clock(seconds) {
  const s = Math.max(0, Math.round(seconds || 0));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function clipFigure(clip) {
  const caption = h("figcaption", {},
    h("span", { class: "clip-camera", text: deviceName(clip.camera_id) }), " ");
  if (clip.state !== "complete") {
    const text = clip.state === "recording" ? t("evidence.recording") : t("evidence.failed", { m: clip.reason || "" });
    return h("figure", { class: "clip", dataset: { camera: clip.camera_id, state: clip.state } },
      h("div", { class: "clip-pending muted", text }), caption);
  }
  const video = h("video", {
    src: clip.url, controls: true, preload: "metadata", muted: true, playsinline: true,
    dataset: { clip: clip.id, pressAt: String(clip.seconds_before ?? 0) },
  });
  // Start at the press; the 30 s before it are one scrub (or the "before" button) away.
  video.addEventListener("loadedmetadata", () => {
    if (!video.dataset.started) {
      video.dataset.started = "1";
      video.currentTime = Math.min(clip.seconds_before ?? 0, video.duration || 0);
    }
  });
  caption.append(
    h("span", { class: "muted", text: t("evidence.span", { before: clock(clip.seconds_before), after: clock((clip.duration_s ?? 0) - (clip.seconds_before ?? 0)) }) }), " ",
    // A clip cut short by a stalled stream is kept but must not pass for a whole one.
    ...(clip.reason ? [h("span", { class: "clip-short", text: t("evidence.short", { m: clip.reason }) }), " "] : []),
    h("button", { class: "clip-before", type: "button", text: t("evidence.from_start"), onclick: () => { video.currentTime = 0; video.play().catch(() => {}); } }), " ",
    h("button", { class: "clip-press", type: "button", text: t("evidence.at_press"), onclick: () => { video.currentTime = clip.seconds_before ?? 0; video.play().catch(() => {}); } }), " ",
    h("a", { class: "clip-download", href: `${clip.url}?download=true`, download: "", text: t("evidence.download") }));
  return h("figure", { class: "clip", dataset: { camera: clip.camera_id, state: clip.state } }, video, caption);
}

async function refresh(current) {
  let clips;
  try {
    clips = await api(`/api/evidence/alarms/${current.alarmId}/clips`);
  } catch (err) {
    // A role without evidence access (maintenance staff) or a hub without it: no video.
    const text = err.status === 403 || err.status === 503 ? t("evidence.none") : t("common.error", { m: err.message });
    current.list.replaceChildren(h("span", { class: "muted", text }));
    return;
  }
  if (shown !== current) return;
  const key = clips.map((c) => `${c.id}:${c.state}`).join(",");
  if (key !== current.key) {
    current.key = key;
    current.list.replaceChildren(...(clips.length
      ? clips.map(clipFigure)
      : [h("span", { class: "muted", text: t("evidence.none") })]));
  }
  clearTimeout(current.timer);
  if (clips.some((c) => c.state === "recording") && current.block.isConnected !== false) {
    current.timer = setTimeout(() => refresh(current), POLL_MS);
  }
}

/** The evidence block of `alarm` for its detail pane; the same block (videos keep playing)
 * while the same alarm stays shown, refreshed when the alarm changes. */
export function evidenceBlock(alarm) {
  if (shown && shown.alarmId === alarm.id) {
    shown.title.textContent = t("evidence.title");
    refresh(shown);
    return shown.block;
  }
  if (shown) clearTimeout(shown.timer);
  const title = h("h4", { text: t("evidence.title") });
  const list = h("div", { class: "clips" }, h("span", { class: "muted", text: t("evidence.loading") }));
  const block = h("div", { class: "evidence-block" }, title, list);
  shown = { alarmId: alarm.id, block, list, title, key: null, timer: null };
  refresh(shown);
  return block;
}

/** The maintenance view's list of schools short of DB15/T 3968 (address, coordinates,
 * two linked cameras with a stream), in the caller's scope. */
export async function loadShortfalls() {
  const view = document.getElementById("maintenance-view");
  if (!view) return;
  let section = document.getElementById("shortfalls");
  if (!section) {
    section = h("section", { id: "shortfalls" });
    view.append(section);
  }
  let items;
  try {
    items = await api("/api/evidence/shortfalls");
  } catch (err) {
    section.replaceChildren(h("p", { class: "error", text: t("common.error", { m: err.message }) }));
    return;
  }
  const problem = (item, code) => code === "too_few_cameras"
    ? t("shortfall.too_few_cameras", { n: item.usable_cameras })
    : t(`shortfall.${code}`);
  section.replaceChildren(
    h("h3", { text: t("shortfall.title", { n: items.length }) }),
    items.length
      ? h("table", { class: "shortfalls" },
        h("thead", {}, h("tr", {}, h("th", { text: t("maint.device") }), h("th", { text: t("shortfall.problems") }))),
        h("tbody", {}, items.map((item) => h("tr", { dataset: { deviceId: item.device_id } },
          h("td", {}, h("div", { "data-raw": "name", text: item.name || item.device_id }), h("small", { class: "muted", "data-raw": "id", text: item.device_id })),
          h("td", { text: item.problems.map((code) => problem(item, code)).join("；") })))))
      : h("p", { class: "muted", text: t("shortfall.none") }));
}

onLangChange(() => { if (document.getElementById("shortfalls")) loadShortfalls(); });
