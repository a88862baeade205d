// The softphone: pick an agent, call it over the browser channel (`WS /browser`, described in
// docs/browser-protocol.md), and watch the call: transcripts, the agent's state on its graph,
// the slots it has filled and how long each reply took.

import { getJSON } from "./api.js";
import { AgentGraph } from "./graph.js";
import { PhoneAudio } from "./phone-audio.js";

const $ = (id) => document.getElementById(id);
const PLAYED_OUT = "\u0000played-out"; // a mark of the page's own: every agent word has played
const KEYS = "0123456789*#";

const graph = new AgentGraph($("graph"));
let agents = new Map();
let current = null; // the call in progress

function setStatus(text) {
  $("status").textContent = text;
}

function addLine(kind, text, generation) {
  const item = document.createElement("li");
  item.className = kind;
  if (generation !== undefined) item.dataset.generation = String(generation);
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = { caller: "You", agent: "Agent", system: "·" }[kind];
  const words = document.createElement("span");
  words.className = "words";
  words.textContent = text;
  item.append(who, words);
  $("transcript").append(item);
  item.scrollIntoView({ block: "nearest" });
  return item;
}

function agentLine(generation) {
  const last = $("transcript").lastElementChild;
  if (last?.classList.contains("agent") && last.dataset.generation === String(generation)) {
    return last;
  }
  return addLine("agent", "", generation);
}

function showSlots(slots) {
  const rows = Object.entries(slots ?? {}).map(([name, value]) => {
    const row = document.createElement("tr");
    const key = document.createElement("th");
    key.textContent = name;
    const cell = document.createElement("td");
    cell.textContent = typeof value === "string" ? value : JSON.stringify(value);
    row.append(key, cell);
    return row;
  });
  $("slots").tBodies[0].replaceChildren(...rows);
}

function resetView() {
  $("transcript").replaceChildren();
  $("partial").textContent = "";
  $("latencies").replaceChildren();
  $("last-latency").textContent = "—";
  $("state").textContent = "—";
  showSlots({});
  graph.show(null);
}

function setInCall(inCall) {
  $("call").disabled = inCall;
  $("agent").disabled = inCall;
  $("hangup").disabled = !inCall;
  document.body.classList.toggle("in-call", inCall);
}

/** One call from this page: the microphone and speaker, and the socket to the server. */
class PhoneCall {
  static async place(agent) {
    const call = new PhoneCall(agent);
    call.audio = await PhoneAudio.open(
      (pcm) => call.sendAudio(pcm),
      (name) => call.played(name),
    );
    call.connect();
    return call;
  }

  constructor(agent) {
    this.agent = agent;
    this.started = false;
    this.path = [];
    this.audio = null;
    this.socket = null;
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/browser`);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      const start = { type: "start", sampleRate: this.audio.sampleRate, agent: this.agent };
      socket.send(JSON.stringify(start));
    };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") this.receive(JSON.parse(event.data));
      else this.audio.play(event.data);
    };
    socket.onclose = (event) => this.closed(event);
    this.socket = socket;
  }

  send(message) {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  sendAudio(pcm) {
    if (this.started && this.socket.readyState === WebSocket.OPEN) this.socket.send(pcm);
  }

  played(name) {
    if (name === PLAYED_OUT) this.audio.close();
    else this.send({ type: "mark", name });
  }

  dtmf(digit) {
    this.send({ type: "dtmf", digit });
    const last = $("transcript").lastElementChild;
    if (last?.classList.contains("keys")) last.querySelector(".words").textContent += digit;
    else addLine("caller", `⌨ ${digit}`).classList.add("keys");
  }

  hangUp() {
    this.send({ type: "hangup" });
  }

  receive(message) {
    switch (message.type) {
      case "started":
        this.started = true;
        setStatus(`In call ${message.callId} (${message.sampleRate} Hz)`);
        break;
      case "mark":
        this.audio.mark(message.name);
        break;
      case "clear":
        this.audio.clear();
        document
          .querySelectorAll(`#transcript li.agent[data-generation="${message.generation}"]`)
          .forEach((line) => line.classList.add("interrupted"));
        break;
      case "speech":
        document.body.classList.toggle("caller-speaking", message.started);
        break;
      case "transcript":
        if (message.final) {
          $("partial").textContent = "";
          if (message.text) addLine("caller", message.text);
        } else {
          $("partial").textContent = message.text;
        }
        break;
      case "agent_text": {
        const words = agentLine(message.generation).querySelector(".words");
        words.textContent = `${words.textContent} ${message.text}`.trim();
        break;
      }
      case "state":
        if (this.path.at(-1) !== message.state) this.path.push(message.state);
        $("state").textContent = message.state;
        graph.show(message.state, this.path);
        showSlots(message.detail?.slots);
        break;
      case "latency": {
        const seconds = `${message.seconds.toFixed(3)} s`;
        $("last-latency").textContent = seconds;
        const item = document.createElement("li");
        item.textContent = `reply ${message.generation}: ${seconds}`;
        $("latencies").append(item);
        break;
      }
      case "transfer":
        addLine("system", `Transferred to ${message.target} (${message.reason})`);
        break;
      case "dtmf":
        addLine("system", `The agent sent digits ${message.digits}`);
        break;
      case "hangup":
        addLine("system", `The agent hung up (${message.reason})`);
        break;
      case "error":
        addLine("system", `Error: ${message.message}`);
        break;
    }
  }

  closed(event) {
    this.started = false;
    // Audio already received plays out; the audio closes when it has.
    this.audio.mark(PLAYED_OUT);
    setStatus(`Call ended${event.reason ? ` (${event.reason})` : ""}`);
    document.body.classList.remove("caller-speaking");
    if (current === this) current = null;
    setInCall(false);
  }
}

async function selectAgent(name) {
  const agent = agents.get(name);
  $("description").textContent = agent?.description ?? "";
  resetView();
  await graph.load(name);
}

async function placeCall() {
  const agent = $("agent").value;
  resetView();
  setInCall(true);
  setStatus("Calling…");
  try {
    current = await PhoneCall.place(agent);
  } catch (error) {
    setStatus(`Cannot call: ${error.message}`);
    setInCall(false);
  }
}

function pressKey(digit) {
  if (current?.started) current.dtmf(digit);
}

async function init() {
  const list = await getJSON("/agents");
  agents = new Map(list.agents.map((agent) => [agent.name, agent]));
  const wanted = new URLSearchParams(location.search).get("agent");
  const chosen = agents.has(wanted) ? wanted : list.default;
  for (const name of agents.keys()) $("agent").add(new Option(name, name, false, name === chosen));
  $("agent").onchange = () => selectAgent($("agent").value);
  $("call").onclick = placeCall;
  $("hangup").onclick = () => current?.hangUp();
  for (const key of $("keypad").querySelectorAll("button")) {
    key.onclick = () => pressKey(key.textContent);
  }
  document.addEventListener("keydown", (event) => {
    if (KEYS.includes(event.key) && event.target.tagName !== "INPUT") pressKey(event.key);
  });
  await selectAgent(chosen);
  $("call").disabled = false;
  setStatus("Ready");
}

init().catch((error) => setStatus(`Cannot load the agents: ${error.message}`));
