// The web page: POST /v1/synthesize with format "jsonl" and play each sentence as its line arrives.
// window.tacoglowPlayer exposes the player's state (the browser test reads it).
"use strict";

const $ = (id) => document.getElementById(id);
const player = (window.tacoglowPlayer = {
  state: "idle", chunks: 0, scheduledSeconds: 0, peak: 0, alignmentDrawn: false, error: null,
});
let context = null;
let analyser = null;
let request = null;
let sources = [];

function setState(state, message) {
  player.state = state;
  document.body.dataset.state = state;
  if (message !== undefined) $("status").textContent = message;
}

// Each voice has vocoders and settings of its own: the vocoder list and placeholders follow the chosen voice.
function showVoice(voice) {
  $("vocoder").replaceChildren(...voice.vocoders.map((name) => new Option(name, name, name === voice.default_vocoder)));
  $("sigma").placeholder = voice.sigma ?? "";
  $("denoiser").placeholder = voice.denoiser_strength ?? "";
}

// A server started with an API key answers 401 without it: the page then shows the key field, and sends the key
// (kept for this tab only, in sessionStorage) as "Authorization: Bearer KEY" with each request.
function authorization() {
  const key = $("key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function loadVoices() {
  const response = await fetch("/voices", { headers: authorization() });
  if (response.status === 401) {
    $("key-row").hidden = false;
    const problem = await response.json().catch(() => ({ error: { message: "an API key is needed" } }));
    setState("error", `${problem.error.message}. Enter the key above.`);
    return false;
  }
  const info = await response.json();
  $("voice").replaceChildren();  // loaded again once a key is entered
  for (const v of info.voices) $("voice").add(new Option(v.name, v.name));
  showVoice(info.voices[0]);
  $("voice").onchange = () => showVoice(info.voices.find((v) => v.name === $("voice").value));
  $("text").maxLength = info.limits.max_input_chars;
  return true;
}

function bytesFromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function drawAlignment(piece) {
  const { steps, symbols, data } = piece.alignment;
  if (!steps || !symbols) return;
  const values = bytesFromBase64(data);  // row-major (steps, symbols), 0..255
  const scale = 255 / Math.max(1, values.reduce((a, b) => Math.max(a, b), 0));  // stretch to full contrast
  const image = new ImageData(steps, symbols);
  for (let t = 0; t < steps; t++) {
    for (let s = 0; s < symbols; s++) {
      const v = values[t * symbols + s] * scale;
      const o = ((symbols - 1 - s) * steps + t) * 4;  // input symbols go up the y axis
      image.data.set([Math.min(255, v * 1.4), v, 80 + v * 0.6, 255], o);
    }
  }
  const offscreen = document.createElement("canvas");
  offscreen.width = steps;
  offscreen.height = symbols;
  offscreen.getContext("2d").putImageData(image, 0, 0);
  const canvas = $("alignment");
  const g = canvas.getContext("2d");
  g.imageSmoothingEnabled = false;
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.drawImage(offscreen, 0, 0, canvas.width, canvas.height);
  $("caption").textContent = `Sentence ${piece.index + 1} of ${piece.total}: "${piece.text}" ` +
    `(${steps} decoder steps, ${symbols} symbols, stopped by the ${piece.stopped_by}).`;
  player.alignmentDrawn = true;
}

function stop() {
  if (request) request.abort();
  request = null;
  for (const source of sources) {
    source.onended = null;
    try { source.stop(); } catch (error) { /* not started yet */ }
  }
  sources = [];
}

function schedule(piece, clock) {
  const bytes = bytesFromBase64(piece.audio);
  const view = new DataView(bytes.buffer);
  const n = Math.max(1, bytes.length >> 1);
  const buffer = context.createBuffer(1, n, piece.sample_rate);
  const channel = buffer.getChannelData(0);
  for (let i = 0; i < bytes.length >> 1; i++) channel[i] = view.getInt16(2 * i, true) / 32768;
  const source = context.createBufferSource();
  source.buffer = buffer;
  source.connect(analyser);
  clock.next = Math.max(clock.next, context.currentTime + 0.05);
  source.start(clock.next);
  clock.next += buffer.duration;
  sources.push(source);
  player.chunks += 1;
  player.scheduledSeconds += buffer.duration;
  drawAlignment(piece);
  setState("playing", `Playing sentence ${piece.index + 1} of ${piece.total}…`);
  return source;
}

function watchLevel() {
  const samples = new Float32Array(analyser.fftSize);
  setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    for (const x of samples) player.peak = Math.max(player.peak, Math.abs(x));
  }, 20);
}

async function play(event) {
  event.preventDefault();
  stop();
  if (!context) {
    context = new AudioContext();
    analyser = context.createAnalyser();
    analyser.connect(context.destination);
    watchLevel();
  }
  await context.resume();
  if ($("voice").options.length === 0 && !(await loadVoices())) return;  // no key yet, or a wrong one
  const body = { text: $("text").value, format: "jsonl", voice: $("voice").value, vocoder: $("vocoder").value,
                 speed: Number($("speed").value) || 1 };
  if ($("sigma").value !== "") body.sigma = Number($("sigma").value);
  if ($("denoiser").value !== "") body.denoiser_strength = Number($("denoiser").value);
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  Object.assign(player, { chunks: 0, scheduledSeconds: 0, peak: 0, error: null, startTime: context.currentTime });
  setState("loading", "Synthesizing…");
  request = new AbortController();
  try {
    const response = await fetch("/v1/synthesize", {
      method: "POST", headers: { "Content-Type": "application/json", ...authorization() }, body: JSON.stringify(body),
      signal: request.signal,
    });
    if (!response.ok) {
      if (response.status === 401) $("key-row").hidden = false;
      const problem = await response.json().catch(() => ({ error: { message: response.statusText } }));
      throw new Error(problem.error.message);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const clock = { next: 0 };
    let pending = "";
    let last = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      let end;
      while ((end = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, end);
        pending = pending.slice(end + 1);
        if (line.trim()) last = schedule(JSON.parse(line), clock);
      }
    }
    if (last) {
      last.onended = () => {
        player.playedSeconds = context.currentTime - player.startTime;
        setState("ended", `Played ${player.chunks} sentence(s), ${player.scheduledSeconds.toFixed(2)} s.`);
      };
    }
  } catch (error) {
    if (error.name === "AbortError") return;
    player.error = String(error.message || error);
    setState("error", `Error: ${player.error}`);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", play);
  $("stop").addEventListener("click", () => { stop(); setState("idle", "Stopped."); });
  $("key").value = sessionStorage.getItem("tacoglow-key") || "";
  $("key").addEventListener("change", () => {
    sessionStorage.setItem("tacoglow-key", $("key").value.trim());
    loadVoices().then((loaded) => { if (loaded) setState("idle", "Ready."); })
      .catch((error) => setState("error", `Could not load voices: ${error}`));
  });
  loadVoices().catch((error) => setState("error", `Could not load voices: ${error}`));
});
