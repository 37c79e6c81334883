// WebRTC live view of one camera: offer → hub's answer; the hub relays the RTSP stream.
import { api, csrfToken } from "./api.js";

const open = new Set(); // viewer ids this page holds

// Closing the tab ends its viewers at once, so they do not hold the hub's viewer slots
// until their connections time out.
addEventListener("pagehide", () => {
  for (const id of open) {
    fetch(`/api/live/viewers/${encodeURIComponent(id)}`, {
      method: "DELETE", keepalive: true, credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken() },
    }).catch(() => {});
  }
  open.clear();
});

/** Play `cameraId` in `video`; returns a function that stops it. */
export async function startLive(video, cameraId) {
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addEventListener("track", (event) => {
    video.srcObject = event.streams[0] || new MediaStream([event.track]);
    video.play().catch(() => {});
  });
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await iceGathered(pc);
  let answer;
  try {
    answer = await api(`/api/live/${encodeURIComponent(cameraId)}/offer`, {
      method: "POST", body: { sdp: pc.localDescription.sdp, type: "offer" },
    });
  } catch (err) {
    pc.close();
    throw err;
  }
  await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
  video.dataset.viewer = answer.viewer_id;
  open.add(answer.viewer_id);
  video.dataset.passthrough = String(answer.passthrough);
  return async () => {
    pc.close();
    open.delete(answer.viewer_id);
    video.srcObject = null;
    delete video.dataset.viewer;
    try {
      await api(`/api/live/viewers/${encodeURIComponent(answer.viewer_id)}`, { method: "DELETE" });
    } catch (err) {
      if (err.status !== 404) console.warn("stop live view", err);
    }
  };
}

function iceGathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);
  });
}
