// Names the operator reads instead of codes: jurisdictions, devices, actors, localized alarm texts.
import { api } from "./api.js";
import { currentLang, t, tOr } from "./i18n.js";

const jurisdictions = new Map();
const devices = new Map();
let jurisdictionsLoaded = null;

/** Load the jurisdiction names in the caller's scope (once per sign-in). */
export function loadJurisdictions(force = false) {
  if (!jurisdictionsLoaded || force) {
    jurisdictionsLoaded = api("/api/jurisdictions").then((nodes) => {
      jurisdictions.clear();
      for (const node of nodes) jurisdictions.set(node.code, node);
      return nodes;
    }).catch(() => []);
  }
  return jurisdictionsLoaded;
}

/** Forget everything (sign-out). */
export function forgetNames() {
  jurisdictions.clear();
  devices.clear();
  jurisdictionsLoaded = null;
}

/** A jurisdiction's name (its code while unknown). */
export function jurisdictionName(code) {
  if (!code) return "";
  return jurisdictions.get(code)?.name || code;
}

/** The jurisdiction nodes known so far (code -> node). */
export function knownJurisdictions() { return jurisdictions; }

/** Remember devices read elsewhere (the map's list). */
export function rememberDevices(list) {
  for (const device of list) devices.set(device.id, device);
}

/** A device record (cached), or null when it cannot be read. */
export async function device(id) {
  if (devices.has(id)) return devices.get(id);
  try {
    const found = await api(`/api/devices/${encodeURIComponent(id)}`);
    devices.set(id, found);
    return found;
  } catch (err) {
    return null;
  }
}

/** A device's name when known (its id otherwise). */
export function deviceName(id) { return devices.get(id)?.name || id; }

/** Who did it, in the operator's words: users by name, the hub's own parts by role. */
export function actorName(actor) {
  if (!actor) return "";
  const [kind, ...rest] = actor.split(":");
  const name = rest.join(":");
  if (!name) return tOr(`actor.${kind}`, actor);
  if (kind === "user") return name;
  if (kind === "key") return t("actor.key", { n: name });
  if (kind === "system") return tOr(`actor.system.${name}`, `${t("actor.system")}·${name}`);
  return actor;
}

/** The alarm's title in the console's language (the stored title for alarms without one). */
export function alarmTitle(alarm) { return alarm.title_i18n?.[currentLang()] || alarm.title; }

/** The alarm's SOP in the console's language. */
export function alarmSop(alarm) {
  const local = alarm.sop_i18n?.[currentLang()];
  return local === undefined ? alarm.sop : local;
}
