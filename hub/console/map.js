// The jurisdiction map on the queue screen: boundaries (GeoJSON from the hub), device markers
// coloured by health, open alarms pinned at their device. Tiles only when the site configures a
// tile server (a control room often has no internet); Leaflet itself is served by the hub.
import { api, h } from "./api.js";
import { t, onLangChange } from "./i18n.js";
import { startLive } from "./live.js";
import { alarmTitle, rememberDevices, device } from "./names.js";
import { onQueueChange, queueAlarms, showDetail } from "./alarms.js";

const HEALTH_COLOURS = { online: "#30a46c", degraded: "#f76b15", offline: "#e5484d", unknown: "#8b98a5" };
const MAX_DEVICES = 20000;
let map = null;
let deviceLayer = null;
let alarmLayer = null;
let boundaryLayer = null;
let config = null;
let devices = [];
let refreshTimer = null;
let popupStop = null;
let starting = null;

/** Draw the map (once per sign-in) and keep its markers current. */
export function startMap() {
  if (!starting) starting = build().catch((err) => {
    starting = null;
    document.getElementById("map-summary").textContent = t("common.error", { m: err.message });
  });
  return starting;
}

/** Remove the map (sign-out). */
export function stopMap() {
  clearInterval(refreshTimer);
  if (map) map.remove();
  map = deviceLayer = alarmLayer = boundaryLayer = null;
  devices = [];
  starting = null;
}

/** Leaflet measures its box: call after the queue view becomes visible. */
export function mapShown() { if (map) map.invalidateSize(); }

async function build() {
  const L = window.L;
  const element = document.getElementById("map");
  config = await api("/api/console/map");
  map = L.map(element, { preferCanvas: true, zoomControl: false, attributionControl: Boolean(config.tile_url && config.attribution), zoomSnap: 0.25 });
  zoomControl();
  if (map.attributionControl) map.attributionControl.setPrefix(false);
  if (config.tile_url) {
    L.tileLayer(config.tile_url, {
      subdomains: config.subdomains || "abc", maxZoom: config.max_zoom, attribution: config.attribution || "",
    }).addTo(map);
  }
  element.dataset.tiles = config.tile_url ? "on" : "off";
  map.setView(config.center || [40.65, 109.85], config.zoom || 11);
  // Boundary names sit under the markers' layer, so a name never hides a device.
  map.createPane("boundary-labels").style.zIndex = "390";
  const boundaries = await api("/api/jurisdictions/boundaries");
  boundaryLayer = L.geoJSON(boundaries, {
    style: () => ({ color: "#3e93de", weight: 1.5, opacity: 0.9, fillColor: "#3e93de", fillOpacity: 0.06 }),
    onEachFeature: (feature, layer) => {
      layer.bindTooltip(feature.properties.name || feature.properties.code, {
        permanent: boundaries.features.length <= 30, direction: "center", className: "boundary-label",
        pane: "boundary-labels",
      });
    },
  }).addTo(map);
  element.dataset.boundaries = String(boundaries.features.length);
  deviceLayer = L.layerGroup().addTo(map);
  alarmLayer = L.layerGroup().addTo(map);
  await loadDevices();
  const bounds = boundaries.features.length ? boundaryLayer.getBounds() : deviceBounds();
  if (bounds && bounds.isValid()) map.fitBounds(bounds, { padding: [12, 12] });
  pinAlarms(queueAlarms());
  onQueueChange(pinAlarms);
  onLangChange(() => { zoomControl(); summary(); pinAlarms(queueAlarms()); });
  refreshTimer = setInterval(loadDevices, 60000);
  element.gwMap = map; // for the page's own scripts and browser tests: screen points of places
  element.dataset.ready = "true";
}

let zoom = null;
function zoomControl() {
  if (zoom) zoom.remove();
  zoom = window.L.control.zoom({ zoomInTitle: t("map.zoom_in"), zoomOutTitle: t("map.zoom_out") }).addTo(map);
}

function deviceBounds() {
  const placed = devices.filter(placedAt);
  return placed.length ? window.L.latLngBounds(placed.map((d) => [d.latitude, d.longitude])) : null;
}

function placedAt(d) { return d.latitude !== null && d.latitude !== undefined && d.longitude !== null && d.longitude !== undefined; }

async function loadDevices() {
  const found = [];
  let cursor = null;
  do {
    const params = new URLSearchParams({ limit: "500" });
    if (cursor) params.set("cursor", cursor);
    const page = await api(`/api/devices?${params}`);
    found.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && found.length < MAX_DEVICES);
  devices = found;
  rememberDevices(found);
  drawDevices();
}

function drawDevices() {
  const L = window.L;
  deviceLayer.clearLayers();
  let placed = 0;
  for (const d of devices) {
    if (!placedAt(d)) continue;
    placed += 1;
    const health = d.health || "unknown";
    const marker = L.circleMarker([d.latitude, d.longitude], {
      radius: d.kind === "camera" ? 5 : 6, color: "#0f1720", weight: 1,
      fillColor: HEALTH_COLOURS[health] || HEALTH_COLOURS.unknown, fillOpacity: 0.95,
    });
    marker.on("click", () => devicePopup(d, marker));
    deviceLayer.addLayer(marker);
  }
  const element = document.getElementById("map");
  element.dataset.devices = String(placed);
  element.dataset.unplaced = String(devices.length - placed);
  summary();
}

function summary() {
  const element = document.getElementById("map");
  const parts = [t("map.devices", { n: element.dataset.devices || 0 }), t("map.alarms", { n: element.dataset.alarms || 0 })];
  if (Number(element.dataset.unplaced || 0)) parts.push(t("map.unplaced", { n: element.dataset.unplaced }));
  if (element.dataset.tiles === "off") parts.push(t("map.no_tiles"));
  document.getElementById("map-summary").textContent = parts.join(" · ");
}

function devicePopup(d, marker) {
  const body = h("div", { class: "device-popup", dataset: { deviceId: d.id } },
    h("b", { "data-raw": "name", text: d.name || d.id }), h("br"),
    h("span", { class: `health-${d.health || "unknown"}`, text: t(`health.${d.health || "unknown"}`) }));
  if (d.kind === "camera") {
    const video = h("video", { class: "popup-live", muted: true, autoplay: true, playsinline: true });
    video.muted = true;
    const status = h("small", { class: "muted" });
    body.append(h("div", { class: "actions" }, h("button", { text: t("map.watch"), onclick: async () => {
      await stopPopupVideo();
      status.textContent = t("live.connecting");
      try { popupStop = await startLive(video, d.id); status.textContent = ""; } catch (err) { status.textContent = t("live.failed", { m: err.message }); }
    } })), video, status);
  }
  marker.bindPopup(body, { minWidth: d.kind === "camera" ? 330 : 120, maxWidth: 360 }).openPopup();
  const close = marker.getPopup().getElement()?.querySelector(".leaflet-popup-close-button");
  if (close) close.setAttribute("aria-label", t("map.close"));
  marker.once("popupclose", stopPopupVideo);
}

async function stopPopupVideo() {
  const stop = popupStop;
  popupStop = null;
  if (stop) await stop();
}

async function pinAlarms(alarms) {
  if (!map) return;
  const L = window.L;
  const pins = [];
  for (const alarm of alarms) {
    const found = await device(alarm.device_id);
    if (!found || !placedAt(found)) continue;
    pins.push([alarm, found]);
  }
  alarmLayer.clearLayers();
  for (const [alarm, found] of pins) {
    const icon = L.divIcon({
      className: "",
      html: h("div", {
        class: `alarm-pin prio-${alarm.priority}${alarm.state === "new" ? " fresh" : ""}`,
        dataset: { alarmId: alarm.id, lat: String(found.latitude), lng: String(found.longitude) },
        title: alarmTitle(alarm),
      }),
      iconSize: [22, 22], iconAnchor: [11, 11],
    });
    const marker = L.marker([found.latitude, found.longitude], { icon, zIndexOffset: 1000 - alarm.priority * 100, keyboard: false });
    marker.on("click", () => showDetail(alarm.id, { play: true }));
    alarmLayer.addLayer(marker);
  }
  document.getElementById("map").dataset.alarms = String(pins.length);
  summary();
}
