// The web console: a view of the admin API (PROTOCOL.md, "Admin API"), refreshed every 2 s, with
// a live tail through ferry.js and a publish box. Every data request carries the admin token,
// which the operator types once per tab (sessionStorage).
import { FerryClient, MemoryStorage } from "/v1/ferry.js";

const TOKEN_KEY = "ferry-console-token";
const REFRESH_MS = 2000;
const TAIL_LIMIT = 100;
/** Clients whose subscriptions are fetched (one request each) at every refresh. */
const DETAIL_LIMIT = 100;

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(TOKEN_KEY);
let refreshTimer = null;
/** The previous sample of each topic's head and of the broker's totals, for rates. */
let previousTopics = new Map();
let previousStats = null;
const tail = { client: null, topic: null, messages: [], paused: false, unseen: 0 };

/** An element with `text` (never parsed as HTML: names and payloads come from clients). */
function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.append(cell);
  return tr;
}

const number = (value, className = "number") => element("td", value.toLocaleString("en"), className);
const time = (ms) => new Date(ms).toLocaleTimeString();

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

class APIError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, init = {}) {
  const headers = { ...init.headers };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { ...init, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new APIError(response.status, body);
  return body;
}

/** Shows one of the login form, the "admin API is off" note, or the dashboard. */
function show(view, message) {
  for (const id of ["login", "admin-off", "dashboard"]) $(id).hidden = id !== view;
  $("sign-out").hidden = view !== "dashboard";
  if (message) $("login-message").textContent = message;
}

/** Asks without a token: 403 means no admin token is configured, 401 that one is needed. */
async function start() {
  if (token) return openDashboard();
  try {
    await api("/v1/admin/stats");
  } catch (error) {
    if (error.status === 403) return show("admin-off");
    if (error.status !== 401) setStatus(`broker unreachable: ${error.message}`, true);
  }
  show("login");
}

function openDashboard() {
  show("dashboard");
  refresh();
}

function signOut(message) {
  clearTimeout(refreshTimer);
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  stopTail();
  tail.client?.close();
  tail.client = null;
  show("login", message);
}

async function refresh() {
  clearTimeout(refreshTimer);
  try {
    const [stats, topics, clients] = await Promise.all([
      api("/v1/admin/stats"), api("/v1/admin/topics"), api("/v1/admin/clients"),
    ]);
    const details = await Promise.all(clients.clients.slice(0, DETAIL_LIMIT).map((client) =>
      api(`/v1/admin/clients/${encodeURIComponent(client.client_id)}`).catch(() => null)));
    const now = performance.now();
    renderStats(stats, now);
    renderTopics(topics.topics, now);
    renderClients(clients.clients, details);
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    if (error.status === 401) return signOut("The broker refused this token.");
    if (error.status === 403) return show("admin-off");
    setStatus(`refresh failed: ${error.message}`, true);
  }
  refreshTimer = setTimeout(refresh, REFRESH_MS);
}

/** Per second between the previous sample and this one; null on the first sample. */
function rate(previous, current, now) {
  if (!previous || current < previous.value) return null;
  const seconds = (now - previous.at) / 1000;
  return seconds > 0 ? (current - previous.value) / seconds : null;
}

const formatRate = (value) => (value === null ? "–" : value.toFixed(value < 10 ? 1 : 0));

function renderStats(stats, now) {
  const published = rate(previousStats && { value: previousStats.published, at: previousStats.at }, stats.published, now);
  previousStats = { published: stats.published, at: now };
  const mib = (bytes) => (bytes / 1048576).toFixed(1);
  $("broker").textContent = `v${stats.version} · up ${Math.round(stats.uptime_seconds)} s · ` +
    `${stats.connections} connections · ${stats.sessions} sessions · ${formatRate(published)} msgs/s in · ` +
    `${mib(stats.data_bytes)} of ${mib(stats.map_size)} MiB · sync ${stats.sync}`;
}

function renderTopics(topics, now) {
  const body = $("topics").tBodies[0];
  const samples = new Map();
  const rows = topics.map((topic) => {
    const previous = previousTopics.get(topic.topic);
    // A new epoch restarts the versions: no rate across it.
    const perSecond = previous?.epoch === topic.epoch ? rate(previous, topic.head, now) : null;
    samples.set(topic.topic, { value: topic.head, epoch: topic.epoch, at: now });
    const tr = row([
      element("td", topic.topic, "name"), number(topic.head, "number head"),
      element("td", formatRate(perSecond), "number rate"), number(topic.messages),
      number(topic.subscribers, "number subscribers"), number(topic.connected),
      number(topic.lag, topic.lag > 0 ? "number lag lagging" : "number lag"),
    ]);
    tr.dataset.topic = topic.topic;
    tr.title = "tail this topic";
    tr.addEventListener("click", () => startTail(topic.topic));
    return tr;
  });
  previousTopics = samples;
  body.replaceChildren(...(rows.length ? rows : [row([emptyCell("no topics yet", 7)])]));
}

function renderClients(clients, details) {
  const body = $("clients").tBodies[0];
  const rows = clients.map((client, index) => {
    const list = element("ul", undefined, "subscriptions");
    for (const sub of details[index]?.subscriptions ?? []) {
      const item = element("li", `${sub.topic}: ${sub.ack_floor} / ${sub.head}, lag ${sub.lag}`);
      item.dataset.topic = sub.topic;
      if (sub.lag > 0) item.classList.add("lagging");
      list.append(item);
    }
    if (!details[index]) list.append(element("li", `${client.subscriptions} (not fetched)`, "empty"));
    const subscriptions = element("td", undefined, "subscriptions");
    subscriptions.append(list);
    const tr = row([
      element("td", client.client_id, "name"),
      element("td", client.connected ? "connected" : "away", client.connected ? "state connected" : "state away"),
      subscriptions, element("td", time(client.last_seen), "number"),
    ]);
    tr.dataset.client = client.client_id;
    return tr;
  });
  body.replaceChildren(...(rows.length ? rows : [row([emptyCell("no durable clients", 4)])]));
}

function emptyCell(text, span) {
  const cell = element("td", text, "empty");
  cell.colSpan = span;
  return cell;
}

// Live tail: one ephemeral ferry.js client, subscribed from the latest version, so it stores
// nothing in the broker; its state lives in memory only.

function startTail(topic) {
  stopTail();
  $("tail-topic").value = topic;
  if (!tail.client) {
    // With client authentication on, the broker takes the admin token on the upgrade.
    tail.client = new FerryClient(`${location.origin}/v1/ws`, { token, storage: new MemoryStorage() });
    tail.client.on("state", () => renderTailState());
  }
  Object.assign(tail, { topic, messages: [], paused: false, unseen: 0 });
  tail.client.subscribe(topic, (message) => {
    tail.messages.push(message);
    if (tail.messages.length > TAIL_LIMIT) tail.messages.shift();
    if (!tail.paused) return renderTail();
    // Paused: the list stays still, the count says what is waiting.
    tail.unseen += 1;
    renderTailState();
  }, { from: "latest" });
  $("tail-pause").disabled = false;
  renderTail();
}

function stopTail() {
  if (tail.topic) tail.client?.unsubscribe(tail.topic);
  tail.topic = null;
}

function renderTailState() {
  const state = tail.client?.state ?? "off";
  $("tail-pause").textContent = tail.paused ? "Resume" : "Pause";
  const paused = tail.paused ? `, paused (${tail.unseen} new)` : "";
  $("tail-state").textContent = tail.topic
    ? `${tail.topic}: ${state}${paused} · the latest ${TAIL_LIMIT} are kept`
    : "Click a topic or name one.";
}

function payloadText(message) {
  if (message.data !== undefined) return JSON.stringify(message.data);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(atob(message.dataB64), (c) => c.charCodeAt(0)));
  } catch {
    return `base64 ${message.dataB64}`;
  }
}

function renderTail() {
  const items = tail.messages.slice().reverse().map((message) => {
    const item = element("li");
    item.dataset.version = message.version;
    item.append(element("span", `#${message.version}`, "version"), element("span", time(message.ts), "time"),
      document.createTextNode(payloadText(message)));
    return item;
  });
  $("tail").replaceChildren(...items);
  renderTailState();
}

// Publish: over HTTP, so the answer carries the version as soon as it is stored.

async function publish(event) {
  event.preventDefault();
  const topic = $("publish-topic").value.trim();
  const payload = $("publish-payload").value;
  const asJSON = $("publish-kind").value === "json";
  const result = $("publish-result");
  result.classList.remove("error");
  try {
    if (asJSON) JSON.parse(payload);
  } catch (error) {
    result.classList.add("error");
    result.textContent = `not JSON: ${error.message}`;
    return;
  }
  try {
    const answer = await api(`/v1/topics/${encodeURIComponent(topic)}/messages`, {
      method: "POST", body: payload,
      headers: { "Content-Type": asJSON ? "application/json" : "text/plain; charset=utf-8" },
    });
    result.textContent = `${answer.topic}: version ${answer.version}${answer.duplicate ? " (duplicate)" : ""}`;
    result.dataset.version = answer.version;
  } catch (error) {
    result.classList.add("error");
    result.textContent = `refused: ${error.message}`;
  }
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("login-token").value;
  $("login-token").value = "";
  sessionStorage.setItem(TOKEN_KEY, token);
  openDashboard();
});
$("sign-out").addEventListener("click", () => signOut("Token forgotten."));
$("tail-form").addEventListener("submit", (event) => {
  event.preventDefault();
  startTail($("tail-topic").value.trim());
});
$("tail-pause").addEventListener("click", () => {
  tail.paused = !tail.paused;
  tail.unseen = 0;
  renderTail();
});
$("tail-clear").addEventListener("click", () => {
  tail.messages = [];
  tail.unseen = 0;
  renderTail();
});
$("publish-form").addEventListener("submit", publish);
start();
