// GB/T 28181 signalling state in the maintenance view: registered, armed, last alarm.
// A device whose alarms are not armed is shown as a warning: its alarms would never arrive.
import { api, h } from "./api.js";
import { t, localTime } from "./i18n.js";

/** GB/T 28181 devices the caller may see, by id (empty when the platform is off or refused). */
export async function gbDevices() {
  try {
    const rows = await api("/api/gb28181/devices?pending=false");
    return new Map(rows.map((row) => [row.device_id, row]));
  } catch {
    return new Map();
  }
}

/** The armed state as shown: green when armed, a warning when not. */
export function armedBadge(row) {
  return row.armed
    ? h("span", { class: "armed armed-yes", text: t("gb.armed") })
    : h("span", { class: "armed armed-no", text: `⚠ ${t("gb.unarmed")}` });
}

function lastAlarm(row) {
  return row.last_alarm_at ? t("gb.last_alarm", { t: localTime(row.last_alarm_at, true) }) : t("gb.no_alarm");
}

/** The list's cell: armed or not, and when the last alarm came. */
export function armedCell(row) {
  if (!row) return h("td", { class: "muted", text: "—" });
  return h("td", { class: "gb-alarms" }, armedBadge(row), h("small", { class: "muted last-alarm", text: lastAlarm(row) }));
}

/** The detail's label/value pairs for a GB/T 28181 device. */
export function gbFields(row, field) {
  const registered = row.registered
    ? t("gb.registered_until", { t: localTime(row.expires_at, true) })
    : t("gb.not_registered");
  return [
    ...field("gb.registration", h("span", { class: row.registered ? "health-online" : "health-offline", text: registered })),
    ...field("gb.alarms", armedBadge(row),
      !row.armed && row.arm_error ? h("small", { class: "reason-detail", "data-raw": "text", text: row.arm_error }) : null),
    ...field("gb.last_alarm_label", h("span", { class: "last-alarm", text: row.last_alarm_at ? localTime(row.last_alarm_at, true) : t("gb.no_alarm") })),
    ...field("gb.keepalive", row.last_keepalive_at ? localTime(row.last_keepalive_at, true) : t("common.none")),
    ...field("gb.address", h("span", { "data-raw": "text", text: row.host ? `${row.transport} ${row.host}:${row.port}` : "—" })),
    ...field("gb.alarm_subscription", row.alarm_subscribed_until ? localTime(row.alarm_subscribed_until, true) : t("common.none")),
  ];
}
