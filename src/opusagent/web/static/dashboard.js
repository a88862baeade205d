// The dashboard: the calls in progress on this instance (polled every second), a call's detail
// (live from /live/calls/{id}, or the finished call's record from /calls/{id} with its
// recording), and the call records searched with filters (GET /calls).

import { ApiError, get, getJSON } from "./api.js";
import { AgentGraph } from "./graph.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;

const graph = new AgentGraph($("detail-graph"));
let selected = null; // {id, live}: the call shown in the detail panel
let graphAgent = null;
let recordingUrl = null;
let liveIds = new Set();

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text ?? "—";
  return td;
}

function seconds(value) {
  return value === null || value === undefined ? "—" : `${value.toFixed(value < 10 ? 2 : 1)} s`;
}

function when(iso) {
  return new Date(iso).toLocaleString();
}

function showProblem(message) {
  $("problem").textContent = message;
  $("problem").hidden = !message;
}

function rowFor(callId, live, cells) {
  const row = document.createElement("tr");
  row.dataset.callId = callId;
  row.tabIndex = 0;
  row.append(...cells.map(cell));
  row.classList.toggle("selected", selected?.id === callId);
  row.onclick = () => select(callId, live);
  row.onkeydown = (event) => event.key === "Enter" && select(callId, live);
  return row;
}

// --- calls in progress ---------------------------------------------------------------------

async function refreshLive() {
  const { calls } = await getJSON("/live/calls");
  const rows = calls.map((call) =>
    rowFor(call.call_id, true, [
      call.call_id,
      call.bridge,
      call.agent,
      call.state,
      seconds(call.duration_s),
      seconds(call.last_latency_s),
    ]),
  );
  $("live").tBodies[0].replaceChildren(...rows);
  $("live-count").textContent = String(calls.length);
  $("live-empty").hidden = calls.length > 0;
  const ids = new Set(calls.map((call) => call.call_id));
  if ([...liveIds].some((id) => !ids.has(id))) searchRecords(); // a call ended: list its record
  liveIds = ids;
}

async function poll() {
  try {
    await refreshLive();
    if (selected?.live) await showLive(selected.id);
    else if (selected?.pending) await showRecord(selected.id);
    showProblem("");
  } catch (error) {
    showProblem(`Cannot refresh: ${error.message}`);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

// --- one call ------------------------------------------------------------------------------

async function select(callId, live) {
  selected = { id: callId, live };
  for (const row of document.querySelectorAll("tr[data-call-id]")) {
    row.classList.toggle("selected", row.dataset.callId === callId);
  }
  $("detail").hidden = false;
  $("detail-id").textContent = callId;
  $("recording").hidden = true;
  try {
    if (live) await showLive(callId);
    else await showRecord(callId);
  } catch (error) {
    showProblem(error.message);
  }
}

async function drawGraph(agent, state, path) {
  if (graphAgent !== agent) {
    graphAgent = agent;
    await graph.load(agent);
  }
  graph.show(state, path);
}

function showTranscript(lines) {
  const items = lines.map((line) => {
    const item = document.createElement("li");
    item.className = line.speaker;
    item.classList.toggle("interrupted", Boolean(line.interrupted));
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = line.speaker === "caller" ? "Caller" : "Agent";
    const words = document.createElement("span");
    words.className = "words";
    // A record's agent lines say what the caller heard of them (less than the text when cut).
    const said = line.heard ?? line.text;
    words.textContent = [said, line.dtmf ? `⌨ ${line.dtmf}` : ""].filter(Boolean).join(" ");
    if (said !== line.text) words.title = line.text;
    item.append(who, words);
    return item;
  });
  $("detail-transcript").replaceChildren(...items);
}

function showAudit(rows) {
  $("detail-audit").tBodies[0].replaceChildren(
    ...rows.map((row) => {
      const tr = document.createElement("tr");
      tr.append(...row.map(cell));
      return tr;
    }),
  );
}

async function showLive(callId) {
  let call;
  try {
    call = await getJSON(`/live/calls/${encodeURIComponent(callId)}`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
    // The call has ended: its record is written as it ends; wait for it.
    selected = { id: callId, live: false, pending: true };
    $("detail-kind").textContent = "ended";
    return;
  }
  if (selected?.id !== callId) return;
  $("detail-kind").textContent = "live";
  $("detail-summary").textContent =
    `${call.agent} over ${call.bridge}, in ${call.state ?? "—"} for ${seconds(call.duration_s)}; ` +
    `last reply latency ${seconds(call.last_latency_s)}`;
  showTranscript(call.transcript);
  $("detail-partial").textContent = call.partial;
  $("detail-path").textContent = call.path.join(" → ");
  showAudit(call.decisions.map((d) => [d.turn, d.state, "", d.decision]));
  await drawGraph(call.agent, call.state, call.path);
}

async function showRecord(callId) {
  let record;
  try {
    record = await getJSON(`/calls/${encodeURIComponent(callId)}`);
  } catch (error) {
    if (selected?.pending && error instanceof ApiError && error.status === 404) return;
    throw error;
  }
  if (selected?.id !== callId) return;
  selected = { id: callId, live: false };
  $("detail-kind").textContent = record.outcome;
  $("detail-summary").textContent =
    `${record.agent} over ${record.bridge}, ${when(record.started_at)}, ` +
    `${seconds(record.duration_s)}; ended: ${record.end_reason}; final state ${record.final_state}`;
  showTranscript(record.transcript);
  $("detail-partial").textContent = "";
  $("detail-path").textContent = record.path.join(" → ");
  showAudit(
    record.audit.map((a) => [a.turn, a.state_before, a.text || a.dtmf || a.kind, a.decision]),
  );
  await drawGraph(record.agent, record.final_state, record.path);
  await showRecording(callId, record.recording_path);
}

async function showRecording(callId, path) {
  if (recordingUrl) URL.revokeObjectURL(recordingUrl);
  recordingUrl = null;
  $("recording").hidden = true;
  if (!path) return;
  // Fetched rather than linked: the request carries the API key, which <audio src> cannot.
  const blob = await (await get(`/calls/${encodeURIComponent(callId)}/recording`)).blob();
  if (selected?.id !== callId) return;
  recordingUrl = URL.createObjectURL(blob);
  $("recording").src = recordingUrl;
  $("recording").hidden = false;
}

// --- call records ----------------------------------------------------------------------------

async function searchRecords(event) {
  event?.preventDefault();
  const query = new URLSearchParams();
  for (const [name, value] of new FormData($("filters"))) {
    if (!value) continue;
    // datetime-local is the browser's local time; the server takes ISO 8601 with an offset.
    query.set(name, name === "since" || name === "until" ? new Date(value).toISOString() : value);
  }
  try {
    const { calls } = await getJSON(`/calls?${query}`);
    $("records").tBodies[0].replaceChildren(
      ...calls.map((call) =>
        rowFor(call.call_id, false, [
          call.call_id,
          when(call.started_at),
          call.agent,
          call.bridge,
          seconds(call.duration_s),
          call.outcome,
          call.final_state,
        ]),
      ),
    );
    $("records-note").textContent = calls.length ? "" : "No call matches.";
  } catch (error) {
    $("records-note").textContent = `Cannot search the records: ${error.message}`;
  }
}

async function init() {
  $("filters").onsubmit = searchRecords;
  poll();
  searchRecords();
  const { agents } = await getJSON("/agents");
  $("agent-names").replaceChildren(...agents.map((agent) => new Option(agent.name)));
}

init().catch((error) => showProblem(error.message));
