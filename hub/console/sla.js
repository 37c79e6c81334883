// The SLA an operator reads: time left to the alarm's FIRST deadline, or time overdue since it.
// Escalation moves the stored deadline on (to re-notify); the operator must still see how late
// the alarm is, so the original deadline counts, and the escalation level is shown beside it.
import { t } from "./i18n.js";

const ACTIVE = new Set(["new", "acknowledged", "dispatched"]);
const firstDeadlines = new Map(); // alarm id -> {ack, resolve} read from the escalation history

/** Remember an alarm's original deadlines from its escalation history (for a hub whose API
 *  does not give ack_due_first/resolve_due_first). */
export function noteHistory(alarm, history) {
  const found = {};
  for (const entry of history || []) {
    if (entry.action !== "escalate") continue;
    const breaches = entry.details?.breaches || [];
    const overdue = Number(entry.details?.overdue_s);
    if (!Number.isFinite(overdue)) continue;
    const due = new Date(Date.parse(entry.at) - overdue * 1000).toISOString();
    // overdue_s is the larger lateness; with an acknowledge breach that is the acknowledge one.
    if (breaches.includes("acknowledge") && !found.ack) found.ack = due;
    else if (breaches.length === 1 && breaches[0] === "resolve" && !found.resolve) found.resolve = due;
  }
  firstDeadlines.set(alarm.id, found);
}

function original(alarm, which) {
  const fromApi = alarm[`${which}_due_first`];
  if (fromApi) return fromApi;
  const noted = firstDeadlines.get(alarm.id)?.[which];
  if (noted) return noted;
  return alarm[`${which}_due`];
}

function clock(seconds) {
  const pad = (n) => String(n).padStart(2, "0");
  const hours = Math.floor(seconds / 3600);
  return `${hours ? `${hours}:` : ""}${pad(Math.floor(seconds / 60) % 60)}:${pad(seconds % 60)}`;
}

/** {text, late, due, level}: empty for a finished alarm (resolved, closed, false alarm). */
export function slaOf(alarm, now = Date.now()) {
  const level = ACTIVE.has(alarm.state) ? alarm.escalation_level || 0 : 0;
  if (!ACTIVE.has(alarm.state)) return { text: "", late: false, due: null, level };
  const due = original(alarm, alarm.state === "new" ? "ack" : "resolve");
  if (!due) return { text: "", late: false, due: null, level };
  const diff = Math.round((Date.parse(due) - now) / 1000);
  if (diff >= 0 && level === 0) return { text: t("sla.left", { t: clock(diff) }), late: false, due, level };
  // Escalated means a deadline passed, even when its original is unknown here.
  return { text: t("sla.late", { t: clock(Math.max(0, -diff)) }), late: true, due, level };
}
