// Console entry: login, password change, navigation, language.
import { api, setUnauthorizedHandler } from "./api.js";
import { applyTexts, currentLang, onLangChange, setLang, t, tOr } from "./i18n.js";
import { startQueue, stopQueue } from "./alarms.js";
import { mapShown, startMap, stopMap } from "./map.js";
import { forgetNames } from "./names.js";
import { audioReady, unlockAudio } from "./sound.js";
import { loadDevices, loadKpi, loadUnits, relabelMaintenance, setupBroadcast, setupKpi, setupMaintenance } from "./views.js";
import { hideWall, resetWall, setupWall, showWall } from "./wall.js";
import { TASK_VIEWS, setupTasks, startTasks, stopTasks, taskLoaders } from "./tasks.js";

const VIEWS = ["login", "password", "queue", "maintenance", "kpi", "broadcast", "wall", ...TASK_VIEWS];
const loaders = { queue: mapShown, maintenance: loadDevices, kpi: loadKpi, broadcast: loadUnits, wall: showWall, ...taskLoaders };
let me = null;
let current = null;

function show(view) {
  if (current === "wall" && view !== "wall") hideWall();
  current = view;
  for (const name of VIEWS) document.getElementById(`${name}-view`).hidden = name !== view;
  for (const button of document.querySelectorAll("#nav button")) button.classList.toggle("active", button.dataset.view === view);
  document.body.dataset.view = view;
  if (loaders[view]) loaders[view]();
}

function showWho() {
  if (!me) return;
  document.getElementById("who").textContent = `${me.display_name || me.username} · ${tOr(`role.${me.role}`, me.role)}`;
}

function signedOut() {
  me = null;
  stopQueue();
  stopTasks();
  stopMap();
  resetWall();
  forgetNames();
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("sound").hidden = true;
  document.getElementById("conn").hidden = true;
  document.getElementById("who").textContent = "";
  show("login");
}

async function signedIn(identity) {
  me = identity;
  showWho();
  document.getElementById("logout").hidden = false;
  if (identity.must_change_password) { show("password"); return; }
  document.getElementById("nav").hidden = false;
  await startTasks(identity);
  // A department sees its own tasks only: no alarm queue, map or stream.
  if (identity.role === "department") { show("tasks"); return; }
  document.getElementById("sound").hidden = audioReady();
  show("queue");
  await startQueue();
  startMap();
}

async function login(event) {
  event.preventDefault();
  unlockAudio(); // the click is the gesture browsers require before playing sound
  const form = event.target;
  const error = document.getElementById("login-error");
  error.textContent = "";
  try {
    const identity = await api("/api/auth/login", { method: "POST", body: { username: form.username.value, password: form.password.value } });
    form.password.value = "";
    await signedIn(identity);
  } catch (err) {
    error.textContent = err.status === 429 ? t("auth.locked", { s: err.retryAfter ?? "" }) : t("auth.failed");
  }
}

async function changePassword(event) {
  event.preventDefault();
  const form = event.target;
  const error = document.getElementById("password-error");
  try {
    await api("/api/auth/password", { method: "POST", body: { current_password: form.current.value, new_password: form.next.value } });
    form.reset();
    signedOut();
    document.getElementById("login-error").textContent = t("password.done");
  } catch (err) {
    error.textContent = err.message;
  }
}

async function boot() {
  const lang = document.getElementById("lang");
  lang.value = currentLang();
  lang.addEventListener("change", () => setLang(lang.value));
  applyTexts(document);
  setUnauthorizedHandler(() => { if (me) signedOut(); });
  document.getElementById("login-form").addEventListener("submit", login);
  document.getElementById("password-form").addEventListener("submit", changePassword);
  document.getElementById("logout").addEventListener("click", async () => {
    try { await api("/api/auth/logout", { method: "POST" }); } finally { signedOut(); }
  });
  document.getElementById("sound").addEventListener("click", () => {
    document.getElementById("sound").hidden = unlockAudio();
  });
  setupTasks();
  for (const button of document.querySelectorAll("#nav button")) button.addEventListener("click", () => show(button.dataset.view));
  setupMaintenance();
  setupKpi();
  setupBroadcast();
  setupWall();
  onLangChange(() => {
    showWho();
    relabelMaintenance();
    if (current === "kpi") loadKpi();
    if (current === "broadcast") loadUnits();
  });
  try {
    await signedIn(await api("/api/auth/me"));
  } catch (err) {
    signedOut();
  }
  document.body.dataset.ready = "true";
}

boot();
