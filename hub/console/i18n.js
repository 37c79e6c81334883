// Console texts in Simplified Chinese (default) and English.
const TEXTS = {
  "zh-CN": {
    "app.title": "GridWatch 告警中心",
    "nav.queue": "告警", "nav.maintenance": "运维", "nav.kpi": "指标", "nav.broadcast": "广播",
    "auth.title": "登录", "auth.username": "用户名", "auth.password": "密码", "auth.submit": "登录",
    "auth.logout": "退出", "auth.failed": "用户名或密码错误", "auth.locked": "失败次数过多，请 {s} 秒后再试",
    "password.title": "请修改密码", "password.current": "当前密码", "password.new": "新密码",
    "password.policy": "至少 12 位，包含大写、小写、数字、符号中的三类，且不含用户名。",
    "password.submit": "修改", "password.done": "密码已修改，请重新登录",
    "sound.enable": "启用声音",
    "conn.up": "实时", "conn.down": "重连中…",
    "queue.title": "告警队列", "queue.priority": "级别", "queue.alarm": "告警", "queue.state": "状态",
    "queue.opened": "发生", "queue.sla": "时限", "queue.empty": "暂无待处理告警",
    "sla.left": "剩余 {t}", "sla.late": "超时 {t}",
    "state.new": "新告警", "state.acknowledged": "已确认", "state.dispatched": "已派发",
    "state.resolved": "已处置", "state.closed": "已关闭", "state.false_alarm": "误报",
    "detail.pick": "选择一条告警查看详情", "detail.device": "设备", "detail.jurisdiction": "辖区",
    "detail.count": "次数", "detail.assignee": "处置人", "detail.department": "部门",
    "detail.sop": "处置预案", "detail.snapshots": "抓拍", "detail.live": "实时视频",
    "detail.history": "处置记录", "detail.deliveries": "推送", "detail.nosnap": "无抓拍",
    "detail.watch": "观看 {name}", "detail.stop": "停止", "detail.nocam": "无关联摄像机",
    "detail.note": "备注", "detail.assignee_ph": "处置人", "detail.department_ph": "部门",
    "evidence.title": "告警录像", "evidence.loading": "加载中…", "evidence.none": "无录像",
    "evidence.recording": "录制中（报警后继续录制）…", "evidence.failed": "无录像：{m}",
    "evidence.span": "报警前 {before}，报警后 {after}", "evidence.from_start": "从报警前开始",
    "evidence.at_press": "跳到报警时刻", "evidence.download": "下载",
    "shortfall.title": "不满足 DB15/T 3968 的学校报警点（{n}）", "shortfall.problems": "问题",
    "shortfall.none": "所有学校报警点均满足要求", "shortfall.no_address": "缺少地址",
    "shortfall.no_coordinates": "缺少坐标", "shortfall.too_few_cameras": "可用联动摄像机 {n} 路（至少 2 路）",
    "action.acknowledge": "确认", "action.assign": "指派", "action.dispatch": "派发",
    "action.resolve": "处置完成", "action.close": "关闭", "action.false_alarm": "误报",
    "action.reopen": "重新打开", "action.note": "添加备注", "action.open": "发生",
    "action.repeat": "重复触发", "action.escalate": "升级", "action.auto_close": "自动关闭",
    "action.failed": "操作失败：{m}",
    "drill.badge": "演练", "drill.note": "演练告警：请按真实流程处置，无需出警。",
    "live.failed": "视频无法打开：{m}", "live.connecting": "连接中…",
    "maint.title": "设备运维", "maint.jurisdiction": "辖区", "maint.kind": "类型",
    "maint.health": "状态", "maint.device": "设备", "maint.since": "自", "maint.reason": "原因",
    "maint.evidence": "证据截图", "maint.none": "没有符合条件的设备",
    "kind.camera": "摄像机", "kind.alarm_point": "报警点", "kind.broadcast_unit": "广播终端",
    "kind.platform": "平台",
    "health.offline": "离线", "health.degraded": "故障", "health.online": "在线", "health.unknown": "未知",
    "common.all": "全部", "common.search": "查询", "common.error": "出错：{m}",
    "kpi.title": "在线率与完好率", "kpi.period": "周期", "kpi.month": "月", "kpi.day": "日",
    "kpi.when": "日期", "kpi.online": "在线率", "kpi.intact": "完好率", "kpi.devices": "设备数",
    "kpi.trend": "近 7 日趋势",
    "bc.title": "应急广播", "bc.target": "对象", "bc.text": "播报内容", "bc.send": "发送",
    "bc.unit": "终端", "bc.zones": "分区", "bc.zone": "分区：{z}",
    "bc.sent": "已发送，等待回执…", "bc.outcome.acked": "终端已确认 ✓", "bc.outcome.failed": "失败：{r}",
    "bc.outcome.timed_out": "超时未回执", "bc.outcome.pending": "等待回执…",
    "nav.wall": "视频墙", "nav.map": "地图",
    "role.operator": "值班员", "role.maintenance": "运维人员", "role.dispatcher": "调度接口", "role.admin": "管理员",
    "prio.1": "一级", "prio.2": "二级", "prio.3": "三级", "prio.4": "四级",
    "sla.escalated": "已升级 {n} 级", "sla.first_due": "首次时限 {t}", "detail.escalation": "升级",
    "sla.none": "—",
    "actor.rules": "规则引擎", "actor.sla": "时限监控", "actor.system": "系统", "actor.key": "接口密钥 {n}",
    "actor.system.drill": "演练", "actor.system.onvif": "视频事件", "actor.system.test": "系统",
    "delivery.line": "{sink} 第 {r} 版：{state}", "delivery.pending": "待推送", "delivery.delivering": "推送中",
    "delivery.delivered": "已送达", "delivery.dead": "投递失败",
    "detail.to_wall": "上墙", "detail.opened_from_map": "地图",
    "kind.nvr": "硬盘录像机", "kind.unknown": "其他设备",
    "maint.transitions": "状态变更", "maint.at": "时间", "maint.from": "原状态", "maint.to": "新状态",
    "maint.name": "名称", "maint.id": "编号", "maint.kind_label": "类型", "maint.location": "位置",
    "maint.jurisdiction_name": "辖区",
    "kpi.all": "全辖区", "kpi.period_month": "{p} 月", "kpi.period_day": "{p}",
    "bc.status.online": "在线", "bc.status.busy": "播放中", "bc.status.fault": "故障",
    "bc.status.offline": "离线", "bc.status.unknown": "未知", "bc.none": "—",
    "map.title": "辖区地图", "map.devices": "设备 {n}", "map.alarms": "告警 {n}", "map.unplaced": "{n} 台设备无坐标",
    "map.watch": "实时视频", "map.open": "查看告警", "map.no_tiles": "未配置底图，仅显示辖区边界",
    "map.legend.alarm": "告警", "map.zoom_in": "放大", "map.zoom_out": "缩小", "map.close": "关闭",
    "wall.title": "视频墙", "wall.layout": "分屏", "wall.tiles": "{n} 画面", "wall.camera": "摄像机",
    "wall.add": "上墙", "wall.clear": "清空", "wall.auto": "一级告警联动摄像机自动上墙",
    "wall.empty": "空闲画面", "wall.busy": "超出观看上限：{m}", "wall.remove": "移除", "wall.failed": "视频无法打开：{m}",
    "wall.connecting": "连接中…", "wall.playing": "播放中", "wall.pick": "选择摄像机", "wall.from_alarm": "告警联动：{t}",
    "common.none": "—",
    "history.note.recovered": "设备已恢复（{kind}），告警自动关闭", "history.note.drill": "演练已计时，由演练关闭",
    "event.health.online": "恢复在线", "event.vqd.ok": "画面恢复正常",
    "nav.tasks": "任务", "nav.dispatch": "派遣统计", "role.department": "部门",
    "task.lanes": "部门任务", "task.none": "尚未派遣部门", "task.queue": "我的任务", "task.queue_empty": "暂无任务",
    "task.pick": "选择一个任务查看详情", "task.dispatch": "派遣", "task.by_rule": "按规则派遣",
    "task.override": "强制闭环", "task.reason_ph": "强制闭环原因", "task.note_ph": "说明（退回须写原因）",
    "task.feedback": "反馈内容", "task.photos": "现场照片", "task.instructions": "任务要求", "task.location": "位置",
    "task.history": "任务记录", "task.failed": "操作失败：{m}", "task.uploading": "照片上传中…",
    "task.left": "{stage}剩余 {t}", "task.late": "{stage}超时 {t}", "task.sent_back": "退回 {n} 次",
    "task.escalated.1": "已报分管领导", "task.escalated.2": "已报中心",
    "task.state.dispatched": "待报到", "task.state.reported_in": "已报到", "task.state.on_site": "已到场",
    "task.state.feedback_submitted": "已反馈", "task.state.accepted": "已验收", "task.state.withdrawn": "已撤回",
    "task.stage.report_in": "报到", "task.stage.on_site": "到场", "task.stage.feedback": "反馈",
    "task.at.dispatched_at": "派遣", "task.at.reported_in_at": "报到", "task.at.on_site_at": "到场",
    "task.at.feedback_at": "反馈", "task.at.finished_at": "办结",
    "task.action.dispatch": "派遣", "task.action.report_in": "报到", "task.action.arrive": "到达现场",
    "task.action.submit_feedback": "提交反馈", "task.action.accept": "验收通过", "task.action.send_back": "退回",
    "task.action.withdraw": "撤回", "task.action.note": "备注", "task.action.escalate": "超时升级",
    "report.title": "派遣统计", "report.month": "月", "report.week": "周", "report.show": "查询",
    "report.department": "部门", "report.town": "苏木镇/街道", "report.received": "接收任务",
    "report.p50": "报到用时 P50", "report.p90": "报到用时 P90", "report.on_time": "按时率", "report.sent_back": "退回率",
    "report.csv": "下载 CSV", "report.xlsx": "下载 XLSX", "report.chart": "各部门按时率（绿）与退回率（橙）",
    "report.empty": "该周期没有派遣任务", "report.seconds": "{s} 秒",
  },
  en: {
    "app.title": "GridWatch Alarm Center",
    "nav.queue": "Alarms", "nav.maintenance": "Maintenance", "nav.kpi": "KPI", "nav.broadcast": "Broadcast",
    "auth.title": "Sign in", "auth.username": "User name", "auth.password": "Password", "auth.submit": "Sign in",
    "auth.logout": "Sign out", "auth.failed": "Wrong user name or password",
    "auth.locked": "Too many failed attempts; try again in {s} s",
    "password.title": "Change your password", "password.current": "Current password",
    "password.new": "New password",
    "password.policy": "At least 12 characters, three of upper case, lower case, digits, symbols, not the user name.",
    "password.submit": "Change", "password.done": "Password changed; sign in again",
    "sound.enable": "Enable sound",
    "conn.up": "Live", "conn.down": "Reconnecting…",
    "queue.title": "Alarm queue", "queue.priority": "Priority", "queue.alarm": "Alarm", "queue.state": "State",
    "queue.opened": "Opened", "queue.sla": "SLA", "queue.empty": "No open alarms",
    "sla.left": "{t} left", "sla.late": "late {t}",
    "state.new": "New", "state.acknowledged": "Acknowledged", "state.dispatched": "Dispatched",
    "state.resolved": "Resolved", "state.closed": "Closed", "state.false_alarm": "False alarm",
    "detail.pick": "Pick an alarm to see its details", "detail.device": "Device",
    "detail.jurisdiction": "Jurisdiction", "detail.count": "Count", "detail.assignee": "Assignee",
    "detail.department": "Department", "detail.sop": "SOP", "detail.snapshots": "Snapshots",
    "detail.live": "Live video", "detail.history": "History", "detail.deliveries": "Deliveries",
    "detail.nosnap": "No snapshots", "detail.watch": "Watch {name}", "detail.stop": "Stop",
    "detail.nocam": "No linked camera", "detail.note": "Note", "detail.assignee_ph": "Assignee",
    "detail.department_ph": "Department",
    "evidence.title": "Alarm video", "evidence.loading": "Loading…", "evidence.none": "No video",
    "evidence.recording": "Recording (after the alarm)…", "evidence.failed": "No video: {m}",
    "evidence.span": "{before} before the alarm, {after} after", "evidence.from_start": "From before the alarm",
    "evidence.at_press": "Go to the alarm", "evidence.download": "Download",
    "shortfall.title": "School alarm points short of DB15/T 3968 ({n})", "shortfall.problems": "Problems",
    "shortfall.none": "Every school alarm point meets the rule", "shortfall.no_address": "no address",
    "shortfall.no_coordinates": "no coordinates", "shortfall.too_few_cameras": "{n} usable linked camera(s) (2 required)",
    "action.acknowledge": "Acknowledge", "action.assign": "Assign", "action.dispatch": "Dispatch",
    "action.resolve": "Resolve", "action.close": "Close", "action.false_alarm": "False alarm",
    "action.reopen": "Reopen", "action.note": "Add note", "action.open": "Opened",
    "action.repeat": "Repeated", "action.escalate": "Escalated", "action.auto_close": "Auto-closed", "action.failed": "Action failed: {m}",
    "drill.badge": "DRILL", "drill.note": "Drill alarm: handle it as a real one; no police dispatch is needed.",
    "live.failed": "Video unavailable: {m}", "live.connecting": "Connecting…",
    "maint.title": "Device maintenance", "maint.jurisdiction": "Jurisdiction code", "maint.kind": "Kind",
    "maint.health": "Health", "maint.device": "Device", "maint.since": "Since", "maint.reason": "Reason",
    "maint.evidence": "Evidence snapshot", "maint.none": "No matching devices",
    "kind.camera": "Camera", "kind.alarm_point": "Alarm point", "kind.broadcast_unit": "Broadcast unit",
    "kind.platform": "Platform",
    "health.offline": "Offline", "health.degraded": "Degraded", "health.online": "Online",
    "health.unknown": "Unknown",
    "common.all": "All", "common.search": "Search", "common.error": "Error: {m}",
    "kpi.title": "Online and intact rates", "kpi.period": "Period", "kpi.month": "Month", "kpi.day": "Day",
    "kpi.when": "Date", "kpi.online": "Online rate", "kpi.intact": "Intact rate", "kpi.devices": "Devices",
    "kpi.trend": "Last 7 days",
    "bc.title": "Broadcast", "bc.target": "Target", "bc.text": "Message", "bc.send": "Send",
    "bc.unit": "Unit", "bc.zones": "Zones", "bc.zone": "Zone: {z}",
    "bc.sent": "Sent; waiting for the ack…", "bc.outcome.acked": "Acknowledged by the unit ✓",
    "bc.outcome.failed": "Failed: {r}", "bc.outcome.timed_out": "No ack (timed out)",
    "bc.outcome.pending": "Waiting for the ack…",
    "nav.wall": "Video wall", "nav.map": "Map",
    "role.operator": "operator", "role.maintenance": "maintenance", "role.dispatcher": "dispatcher", "role.admin": "admin",
    "prio.1": "P1", "prio.2": "P2", "prio.3": "P3", "prio.4": "P4",
    "sla.escalated": "escalation level {n}", "sla.first_due": "first deadline {t}", "detail.escalation": "Escalation",
    "sla.none": "—",
    "actor.rules": "Rules", "actor.sla": "SLA monitor", "actor.system": "System", "actor.key": "API key {n}",
    "actor.system.drill": "Drill", "actor.system.onvif": "Video events", "actor.system.test": "System",
    "delivery.line": "{sink} revision {r}: {state}", "delivery.pending": "pending", "delivery.delivering": "delivering",
    "delivery.delivered": "delivered", "delivery.dead": "failed",
    "detail.to_wall": "To the wall", "detail.opened_from_map": "Map",
    "kind.nvr": "NVR", "kind.unknown": "Other device",
    "maint.transitions": "State changes", "maint.at": "Time", "maint.from": "From", "maint.to": "To",
    "maint.name": "Name", "maint.id": "ID", "maint.kind_label": "Kind", "maint.location": "Location",
    "maint.jurisdiction_name": "Jurisdiction",
    "kpi.all": "All jurisdictions", "kpi.period_month": "{p}", "kpi.period_day": "{p}",
    "bc.status.online": "online", "bc.status.busy": "playing", "bc.status.fault": "fault",
    "bc.status.offline": "offline", "bc.status.unknown": "unknown", "bc.none": "—",
    "map.title": "Jurisdiction map", "map.devices": "{n} devices", "map.alarms": "{n} alarms",
    "map.unplaced": "{n} devices without coordinates",
    "map.watch": "Live video", "map.open": "Open alarm", "map.no_tiles": "No base map configured; boundaries only",
    "map.legend.alarm": "Alarm", "map.zoom_in": "Zoom in", "map.zoom_out": "Zoom out", "map.close": "Close",
    "wall.title": "Video wall", "wall.layout": "Layout", "wall.tiles": "{n} tiles", "wall.camera": "Camera",
    "wall.add": "Add to wall", "wall.clear": "Clear", "wall.auto": "P1 alarms put their cameras on the wall",
    "wall.empty": "Empty tile", "wall.busy": "Viewer limit reached: {m}", "wall.remove": "Remove", "wall.failed": "Video unavailable: {m}",
    "wall.connecting": "Connecting…", "wall.playing": "Playing", "wall.pick": "Pick a camera", "wall.from_alarm": "Alarm: {t}",
    "common.none": "—",
    "history.note.recovered": "device recovered ({kind}); closed by itself", "history.note.drill": "drill measured; closed by the drill",
    "event.health.online": "back online", "event.vqd.ok": "picture good again",
    "nav.tasks": "Tasks", "nav.dispatch": "Dispatch report", "role.department": "department",
    "task.lanes": "Department tasks", "task.none": "No department dispatched yet", "task.queue": "My tasks",
    "task.queue_empty": "No tasks", "task.pick": "Pick a task to see it", "task.dispatch": "Dispatch",
    "task.by_rule": "Dispatch by rule", "task.override": "Close the loop anyway", "task.reason_ph": "Reason for the override",
    "task.note_ph": "Note (a send-back needs a reason)", "task.feedback": "Feedback", "task.photos": "Photos on site",
    "task.instructions": "Instructions", "task.location": "Location", "task.history": "Task history",
    "task.failed": "Action failed: {m}", "task.uploading": "Uploading photos…",
    "task.left": "{stage} in {t}", "task.late": "{stage} overdue {t}", "task.sent_back": "sent back {n}×",
    "task.escalated.1": "supervisor told", "task.escalated.2": "center told",
    "task.state.dispatched": "awaiting report-in", "task.state.reported_in": "reported in", "task.state.on_site": "on site",
    "task.state.feedback_submitted": "feedback in", "task.state.accepted": "accepted", "task.state.withdrawn": "withdrawn",
    "task.stage.report_in": "Report-in", "task.stage.on_site": "On site", "task.stage.feedback": "Feedback",
    "task.at.dispatched_at": "Dispatched", "task.at.reported_in_at": "Reported in", "task.at.on_site_at": "On site",
    "task.at.feedback_at": "Feedback", "task.at.finished_at": "Done",
    "task.action.dispatch": "dispatched", "task.action.report_in": "Report in", "task.action.arrive": "On site",
    "task.action.submit_feedback": "Submit feedback", "task.action.accept": "Accept", "task.action.send_back": "Send back",
    "task.action.withdraw": "Withdraw", "task.action.note": "Note", "task.action.escalate": "escalated",
    "report.title": "Dispatch report", "report.month": "Month", "report.week": "Week", "report.show": "Show",
    "report.department": "Department", "report.town": "Town / street", "report.received": "Received",
    "report.p50": "Report-in p50", "report.p90": "Report-in p90", "report.on_time": "On time", "report.sent_back": "Sent back",
    "report.csv": "Download CSV", "report.xlsx": "Download XLSX",
    "report.chart": "On-time rate (green) and sent-back rate (orange) by department",
    "report.empty": "No tasks dispatched in this period", "report.seconds": "{s} s",
  },
};

const KEY = "gridwatch.lang";
let lang = localStorage.getItem(KEY) in TEXTS ? localStorage.getItem(KEY) : "zh-CN";
const listeners = new Set();

/** The current language code. */
export function currentLang() { return lang; }

/** The text for `key`, with {name} placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = TEXTS[lang][key] ?? TEXTS["zh-CN"][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

/** True when `key` has a text (so callers can fall back to raw values). */
export function has(key) { return key in TEXTS[lang] || key in TEXTS["zh-CN"]; }

/** The text for `key` when known, else `fallback` (a raw code shown as it is). */
export function tOr(key, fallback, vars = {}) { return has(key) ? t(key, vars) : fallback; }

/** Switch language, re-label the page and tell the views. */
export function setLang(code) {
  if (!(code in TEXTS)) return;
  lang = code;
  localStorage.setItem(KEY, code);
  applyTexts(document);
  for (const fn of listeners) fn(code);
}

/** Call `fn` after every language switch. */
export function onLangChange(fn) { listeners.add(fn); }

/** Fill every element carrying data-i18n under `root`. */
export function applyTexts(root) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  document.title = t("app.title");
}

/** A timestamp in Asia/Shanghai, as the district's staff read it. */
export function localTime(iso, withDate = false) {
  if (!iso) return "";
  const options = { timeZone: "Asia/Shanghai", hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" };
  if (withDate) Object.assign(options, { year: "numeric", month: "2-digit", day: "2-digit" });
  return new Intl.DateTimeFormat(lang, options).format(new Date(iso));
}
