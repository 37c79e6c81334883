// The audible P1 alert: a WebAudio beep repeated until every P1 alarm is acknowledged.
let context = null;
let timer = null;

/** Create or resume the audio context (browsers allow it after a user gesture). */
export function unlockAudio() {
  try {
    context = context || new AudioContext();
    if (context.state === "suspended") context.resume();
  } catch (err) {
    console.warn("no audio", err);
  }
  return audioReady();
}

/** True when beeps can actually be heard. */
export function audioReady() { return context !== null && context.state === "running"; }

function beep() {
  document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
  if (!audioReady()) return;
  const now = context.currentTime;
  for (const offset of [0, 0.3]) {
    const osc = context.createOscillator();
    const gain = context.createGain();
    osc.type = "square";
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.2, now + offset);
    gain.gain.exponentialRampToValueAtTime(0.001, now + offset + 0.25);
    osc.connect(gain).connect(context.destination);
    osc.start(now + offset);
    osc.stop(now + offset + 0.25);
  }
}

/** Beep every 2 s while `on`; stop when not. */
export function setAlerting(on) {
  document.body.dataset.alerting = on ? "true" : "false";
  if (on && timer === null) {
    beep();
    timer = setInterval(beep, 2000);
  } else if (!on && timer !== null) {
    clearInterval(timer);
    timer = null;
  }
}
