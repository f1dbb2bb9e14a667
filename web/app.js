// The page: one WebRTC session receiving the avatar's video and voice; speech from the
// microphone (sent on the same connection), from typed text (POST /say), and an interrupt button.
// Plain browser APIs only, for Chromium and Firefox.

const STATS_PERIOD_MS = 500;
const ICE_GATHERING_TIMEOUT_MS = 5000; // then offer the candidates gathered so far
const ENDED_STATES = ["failed", "closed"];

const $ = (id) => document.getElementById(id);
const video = $("avatar");
const picker = $("avatar-picker");
const connectButton = $("connect");
const micButton = $("mic");
const echoBox = $("echo");
const sayForm = $("say-form");
const sayText = $("say-text");
const sayButton = $("say");
const interruptButton = $("interrupt");
const notice = $("notice");

// Read by the browser tests.
window.avatarStats = { framesDecoded: 0, fps: 0, state: "idle", speech: false, server: null };

let session = null; // {pc, id, token, input, speech, latencyMs, micSender} while connected

function showState(state) {
  window.avatarStats.state = state;
  $("state").textContent = state;
  $("state").dataset.state = state;
}

function showNotice(text) {
  notice.textContent = text ?? "";
  notice.hidden = !text;
}

function updateControls() {
  const live = session !== null;
  const speech = live && session.speech;
  $("feed").hidden = !speech;
  if (speech) {
    const wsScheme = location.protocol === "https:" ? "wss" : "ws";
    $("feed-ws").textContent = `${wsScheme}://${location.host}/ws/${session.id}?token=${session.token}`;
    $("feed-say").textContent = `curl -X POST -H 'Authorization: Bearer ${session.token}' -d '{"text": "Hello"}' ${location.origin}/sessions/${session.id}/say`;
  }
  connectButton.textContent = live ? "Disconnect" : "Connect";
  picker.disabled = live;
  micButton.disabled = live && !speech;
  micButton.textContent = session?.micSender?.track ? "Stop microphone" : "Start microphone";
  sayText.disabled = sayButton.disabled = interruptButton.disabled = !speech;
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

async function api(path, { method = "GET", body, token } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const reply = await response.json();
  if (!response.ok) throw new Error(reply.error ?? `HTTP ${response.status}`);
  return reply;
}

async function loadAvatars() {
  const { avatars, default: chosen } = await api("/avatars");
  picker.replaceChildren(...avatars.map((name) => new Option(name, name, name === chosen, name === chosen)));
}

// A session; with a microphone track, the mic is its speech input.
async function connect({ microphone = null, unmute = true } = {}) {
  connectButton.disabled = true;
  showState("connecting");
  showNotice("");
  const pc = new RTCPeerConnection();
  const stream = new MediaStream();
  video.srcObject = stream;
  video.muted = !unmute; // autoplay without a click is only allowed muted
  pc.addTransceiver("video", { direction: "recvonly" });
  // Both tracks play through the one media element, so lips and voice share its clock.
  const audio = microphone ? pc.addTransceiver(microphone, { direction: "sendrecv" }) : pc.addTransceiver("audio", { direction: "recvonly" });
  pc.addEventListener("track", (event) => stream.addTrack(event.track));
  pc.addEventListener("connectionstatechange", () => {
    const state = pc.connectionState;
    if (ENDED_STATES.includes(state) && session?.pc === pc) disconnect();
    showState(state);
  });
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc);
    const answer = await api("/offer", {
      method: "POST",
      body: {
        sdp: pc.localDescription.sdp,
        type: "offer",
        avatar: picker.value || undefined,
        input: microphone ? "mic" : "websocket",
        echo: echoBox.checked,
      },
    });
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    session = {
      pc,
      id: answer.session_id,
      token: answer.token,
      input: microphone ? "mic" : "websocket",
      speech: answer.speech,
      latencyMs: answer.latency_ms,
      micSender: microphone ? audio.sender : null,
    };
    window.avatarStats.speech = answer.speech;
    if (!answer.speech) showNotice(`${answer.speech_error} — the avatar can only idle.`);
  } catch (error) {
    pc.close();
    microphone?.stop();
    showState(`error: ${error.message}`);
  } finally {
    connectButton.disabled = false;
    updateControls();
  }
}

function disconnect() {
  const { pc, id, token, micSender } = session;
  session = null;
  micSender?.track?.stop();
  pc.close();
  showState("closed");
  for (const figure of ["fps", "latency", "dropped"]) $(figure).textContent = "–";
  updateControls();
  // keepalive: the request still goes out when the page is being closed
  fetch(`/sessions/${id}`, { method: "DELETE", headers: { Authorization: `Bearer ${token}` }, keepalive: true }).catch(() => {});
}

async function microphone() {
  return navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
}

async function toggleMicrophone() {
  micButton.disabled = true;
  try {
    if (session?.micSender?.track) {
      // Stop sending; the session stays, and the avatar goes back to idle.
      session.micSender.track.stop();
      await session.micSender.replaceTrack(null);
    } else if (session?.input === "mic") {
      await session.micSender.replaceTrack((await microphone()).getAudioTracks()[0]);
    } else {
      // The microphone travels on the session's own connection: a new session carries it.
      const track = (await microphone()).getAudioTracks()[0];
      if (session) disconnect();
      await connect({ microphone: track });
    }
  } catch (error) {
    showNotice(`microphone: ${error.message}`);
  } finally {
    updateControls();
  }
}

async function say(event) {
  event.preventDefault();
  const text = sayText.value.trim();
  if (!session || !text) return;
  try {
    await api(`/sessions/${session.id}/say`, { method: "POST", body: { text }, token: session.token });
    showNotice("");
  } catch (error) {
    showNotice(`say: ${error.message}`);
  }
}

async function interrupt() {
  if (!session) return;
  try {
    await api(`/sessions/${session.id}/interrupt`, { method: "POST", token: session.token });
  } catch (error) {
    showNotice(`interrupt: ${error.message}`);
  }
}

let lastSample = null; // {frames, time} of the previous stats poll

async function pollStats() {
  if (!session) {
    lastSample = null;
    return;
  }
  const { pc, id, token } = session;
  const report = await pc.getStats();
  let rttMs = 0;
  let bufferMs = 0;
  let droppedHere = 0;
  report.forEach((stats) => {
    if (stats.type === "candidate-pair" && stats.nominated && stats.currentRoundTripTime !== undefined) {
      rttMs = stats.currentRoundTripTime * 1000;
    }
    if (stats.type !== "inbound-rtp" || stats.kind !== "video") return;
    const frames = stats.framesDecoded ?? 0;
    if (lastSample && stats.timestamp > lastSample.time) {
      window.avatarStats.fps = ((frames - lastSample.frames) * 1000) / (stats.timestamp - lastSample.time);
      $("fps").textContent = window.avatarStats.fps.toFixed(1);
    }
    lastSample = { frames, time: stats.timestamp };
    window.avatarStats.framesDecoded = frames;
    droppedHere = stats.framesDropped ?? 0;
    if (stats.jitterBufferEmittedCount) bufferMs = (1000 * stats.jitterBufferDelay) / stats.jitterBufferEmittedCount;
  });
  try {
    const server = await api(`/sessions/${id}`, { token });
    window.avatarStats.server = server;
    // Speech to screen: the server's pipeline, half the round trip, the video jitter buffer.
    $("latency").textContent = server.speech ? `${Math.round(server.latency_ms + rttMs / 2 + bufferMs)} ms` : "–";
    $("dropped").textContent = `${server.frames_dropped + droppedHere}`;
  } catch {
    // the session is ending; the connection state will say so
  }
}

connectButton.addEventListener("click", () => (session ? disconnect() : connect()));
micButton.addEventListener("click", toggleMicrophone);
sayForm.addEventListener("submit", say);
interruptButton.addEventListener("click", interrupt);
window.addEventListener("pagehide", () => session && disconnect());
setInterval(pollStats, STATS_PERIOD_MS);

const params = new URLSearchParams(location.search);
await loadAvatars().catch((error) => showNotice(`avatars: ${error.message}`));
updateControls();
if (params.get("echo") === "1") echoBox.checked = true;
if (params.get("autostart") === "1") {
  const track = params.get("mic") === "1" ? (await microphone()).getAudioTracks()[0] : null;
  await connect({ microphone: track, unmute: false });
}
