// The video wall: 4, 9 or 16 tiles, each its own WebRTC viewer. The hub pulls each camera once
// and relays it to every tile and viewer; a tile the hub refuses (viewer limits) says so.
// Tiles play while the wall is on screen and stop when the operator leaves it.
import { api, h } from "./api.js";
import { t, onLangChange } from "./i18n.js";
import { startLive } from "./live.js";
import { alarmTitle, deviceName, rememberDevices } from "./names.js";
import { cameras, onNewAlarm } from "./alarms.js";

const RETRY_MS = 3000;
const tiles = []; // {cameraId, element, video, label, status, stop, state, error}
let layout = 4;
let visible = false;
let cursor = 0;
let note = "";

/** Wire the wall's controls and the P1 linkage. */
export function setupWall() {
  const form = document.getElementById("wall-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = form.elements.camera.value;
    if (id) place([id]);
  });
  document.getElementById("wall-layout").addEventListener("change", (event) => setLayout(Number(event.target.value)));
  document.getElementById("wall-clear").addEventListener("click", clear);
  document.addEventListener("gw:wall", (event) => { place(event.detail.cameras); setNote(t("wall.from_alarm", { t: event.detail.title })); });
  onNewAlarm(async (alarm) => {
    if (alarm.priority !== 1 || alarm.state !== "new" || !document.getElementById("wall-auto").checked) return;
    const ids = await cameras(alarm.device_id);
    if (ids.length) { place(ids); setNote(t("wall.from_alarm", { t: alarmTitle(alarm) })); }
  });
  onLangChange(() => { relabel(); loadCameraChoices(); });
  setLayout(4);
}

function setNote(text) { note = text; document.getElementById("wall-note").textContent = note; }

/** Show the wall: fill the camera list and start the tiles' viewers. */
export async function showWall() {
  visible = true;
  await loadCameraChoices();
  for (const tile of tiles) if (tile.cameraId && !tile.stop && tile.state !== "connecting") play(tile);
}

/** Leave the wall: stop every viewer (the hub closes pulls nobody watches). */
export async function hideWall() {
  visible = false;
  await Promise.all(tiles.map(stopTile));
}

/** Sign-out: forget the tiles. */
export async function resetWall() {
  await hideWall();
  for (const tile of tiles) tile.cameraId = null;
  setLayout(4);
  setNote("");
}

async function loadCameraChoices() {
  const select = document.getElementById("wall-camera");
  try {
    const found = [];
    let next = null;
    do {
      const params = new URLSearchParams({ kind: "camera", limit: "500" });
      if (next) params.set("cursor", next);
      const page = await api(`/api/devices?${params}`);
      found.push(...page.items);
      next = page.next_cursor;
    } while (next && found.length < 5000);
    rememberDevices(found);
    const chosen = select.value;
    select.replaceChildren(h("option", { value: "", text: t("wall.pick") }),
      ...found.map((d) => h("option", { value: d.id, text: d.name || d.id })));
    select.value = chosen;
  } catch (err) {
    setNote(t("common.error", { m: err.message }));
  }
  for (const option of document.querySelectorAll("#wall-layout option")) option.textContent = t("wall.tiles", { n: option.value });
}

function setLayout(count) {
  layout = count;
  const wall = document.getElementById("wall");
  wall.dataset.layout = String(count);
  document.getElementById("wall-layout").value = String(count);
  while (tiles.length > count) stopTile(tiles.pop());
  while (tiles.length < count) tiles.push(makeTile(tiles.length));
  wall.replaceChildren(...tiles.map((tile) => tile.element));
  cursor %= count;
  relabel();
}

function makeTile(index) {
  const video = h("video", { muted: true, autoplay: true, playsinline: true });
  video.muted = true;
  const label = h("span", { class: "tile-label", "data-raw": "name" });
  const status = h("span", { class: "tile-status" });
  const remove = h("button", { class: "tile-remove", type: "button" });
  const element = h("div", { class: "tile", dataset: { index: String(index), state: "empty" } }, video,
    h("div", { class: "tile-bar" }, label, status, remove));
  const tile = { cameraId: null, element, video, label, status, remove, stop: null, state: "empty", error: "" };
  remove.addEventListener("click", async () => { await stopTile(tile); tile.cameraId = null; setState(tile, "empty"); });
  return tile;
}

function setState(tile, state, error = "") {
  tile.state = state;
  tile.error = error;
  tile.element.dataset.state = state;
  tile.element.dataset.camera = tile.cameraId || "";
  relabelTile(tile);
}

function relabelTile(tile) {
  tile.label.textContent = tile.cameraId ? deviceName(tile.cameraId) : "";
  tile.remove.textContent = t("wall.remove");
  tile.remove.hidden = !tile.cameraId;
  const texts = {
    empty: t("wall.empty"), connecting: t("wall.connecting"), playing: "", idle: "",
    busy: t("wall.busy", { m: tile.error }), failed: t("wall.failed", { m: tile.error }),
  };
  tile.status.textContent = texts[tile.state] ?? "";
}

function relabel() {
  for (const tile of tiles) relabelTile(tile);
  if (!note) document.getElementById("wall-note").textContent = "";
}

/** Put cameras on the wall: into empty tiles first, then over the oldest placements. */
function place(ids) {
  for (const id of ids) {
    if (tiles.some((tile) => tile.cameraId === id)) continue;
    let tile = tiles.find((x) => !x.cameraId);
    if (!tile) { tile = tiles[cursor]; cursor = (cursor + 1) % tiles.length; }
    // Claim the tile at once, so the next camera of the same call takes another one.
    const previous = tile.stop;
    tile.stop = null;
    tile.cameraId = id;
    setState(tile, "idle");
    Promise.resolve(previous ? previous() : null).then(() => {
      if (visible && tile.cameraId === id && !tile.stop) play(tile);
    });
  }
}

async function play(tile) {
  const cameraId = tile.cameraId;
  setState(tile, "connecting");
  try {
    const stop = await startLive(tile.video, cameraId);
    if (tile.cameraId !== cameraId || !visible) { await stop(); return; }
    tile.stop = stop;
    // "playing" once pictures arrive, not when the offer is answered.
    if (tile.video.readyState >= 2) setState(tile, "playing");
    else tile.video.addEventListener("loadeddata", () => { if (tile.stop === stop) setState(tile, "playing"); }, { once: true });
  } catch (err) {
    if (tile.cameraId !== cameraId) return;
    const busy = err.status === 429;
    setState(tile, busy ? "busy" : "failed", err.message);
    // A full hub frees viewers as others stop watching: try again while the wall is shown.
    if (busy) setTimeout(() => { if (visible && tile.cameraId === cameraId && tile.state === "busy") play(tile); }, RETRY_MS);
  }
}

async function stopTile(tile) {
  const stop = tile.stop;
  tile.stop = null;
  if (stop) await stop();
  if (tile.cameraId) setState(tile, "idle");
}

async function clear() {
  await Promise.all(tiles.map(stopTile));
  for (const tile of tiles) { tile.cameraId = null; setState(tile, "empty"); }
  cursor = 0;
  setNote("");
}
