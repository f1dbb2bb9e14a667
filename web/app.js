// The viewer: one WebRTC session that receives the avatar's video (and, later, its voice).

const STATS_PERIOD_MS = 500;
const ICE_GATHERING_TIMEOUT_MS = 5000; // then offer the candidates gathered so far
const ENDED_STATES = ["failed", "closed"];

const video = document.getElementById("avatar");
const button = document.getElementById("start");
const stateLabel = document.getElementById("state");
const fpsLabel = document.getElementById("fps");

// Read by the browser tests.
window.avatarStats = { framesDecoded: 0, state: "idle" };

let session = null; // {pc, id, token} while connected

function showState(state) {
  window.avatarStats.state = state;
  stateLabel.textContent = state;
}

function iceGatheringComplete(pc) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
    setTimeout(resolve, ICE_GATHERING_TIMEOUT_MS);
  });
}

async function postOffer(description) {
  const response = await fetch("/offer", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sdp: description.sdp, type: description.type }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ?? `HTTP ${response.status}`);
  return body;
}

async function start({ unmute }) {
  button.disabled = true;
  showState("connecting");
  const pc = new RTCPeerConnection();
  const stream = new MediaStream();
  video.srcObject = stream;
  video.muted = !unmute; // autoplay without a click is only allowed muted
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  // Both tracks play through the one media element, so lips and voice share its clock.
  pc.addEventListener("track", (event) => stream.addTrack(event.track));
  pc.addEventListener("connectionstatechange", () => {
    const state = pc.connectionState;
    if (ENDED_STATES.includes(state) && session?.pc === pc) stop();
    showState(state);
  });
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc);
    const answer = await postOffer(pc.localDescription);
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    session = { pc, id: answer.session_id, token: answer.token };
    button.textContent = "Stop";
  } catch (error) {
    pc.close();
    showState(`error: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

function stop() {
  const { pc, id, token } = session;
  session = null;
  pc.close();
  showState("closed");
  button.textContent = "Start";
  fpsLabel.textContent = "– fps";
  // keepalive: the request still goes out when the page is being closed
  fetch(`/sessions/${id}`, {
    method: "DELETE",
    headers: { Authorization: `Bearer ${token}` },
    keepalive: true,
  }).catch(() => {});
}

let lastSample = null; // {frames, time} of the previous stats poll

async function pollStats() {
  if (!session) {
    lastSample = null;
    return;
  }
  const report = await session.pc.getStats();
  report.forEach((stats) => {
    if (stats.type !== "inbound-rtp" || stats.kind !== "video") return;
    const frames = stats.framesDecoded ?? 0;
    if (lastSample && stats.timestamp > lastSample.time) {
      const fps = ((frames - lastSample.frames) * 1000) / (stats.timestamp - lastSample.time);
      fpsLabel.textContent = `${fps.toFixed(1)} fps`;
    }
    lastSample = { frames, time: stats.timestamp };
    window.avatarStats.framesDecoded = frames;
  });
}

button.addEventListener("click", () => (session ? stop() : start({ unmute: true })));
window.addEventListener("pagehide", () => session && stop());
setInterval(pollStats, STATS_PERIOD_MS);

if (new URLSearchParams(location.search).get("autostart") === "1") start({ unmute: false });
