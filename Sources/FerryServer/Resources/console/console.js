// The web console: a view of the admin API (PROTOCOL.md, "Admin API"), refreshed every 2 s, with
// charts of the last minutes, a topic's detail (with trim and delete), a paged client list, a
// live tail through ferry.js and a publish box. Every data request carries the admin token,
// which the operator types once per tab (sessionStorage).
import { $, api, element, emptyCell, number, row, session } from "/console/common.js";
import { publishRate, renderCharts, sampleLag, sampleStats } from "/console/charts.js";
import { loadClients } from "/console/clients.js";
import { loadTopic, openTopic } from "/console/topic.js";
import { closeTail, startTail } from "/console/tail.js";

const REFRESH_MS = 2000;

let refreshTimer = null;
/** The previous sample of each topic's head, for its rate. */
let previousTopics = new Map();

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

/** Shows one of the login form, the "admin API is off" note, or the dashboard. */
function show(view, message) {
  for (const id of ["login", "admin-off", "dashboard"]) $(id).hidden = id !== view;
  $("sign-out").hidden = view !== "dashboard";
  if (message) $("login-message").textContent = message;
}

/** Asks without a token: 403 means no admin token is configured, 401 that one is needed. */
async function start() {
  if (session.token) return openDashboard();
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
  session.token = null;
  closeTail();
  show("login", message);
}

async function refresh() {
  clearTimeout(refreshTimer);
  try {
    const [stats, topics] = await Promise.all([api("/v1/admin/stats"), api("/v1/admin/topics"), loadClients(), loadTopic()]);
    const now = performance.now();
    sampleStats(stats, now);
    sampleLag(topics.topics, now);
    renderCharts(now);
    renderStats(stats);
    renderTopics(topics.topics, now);
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

function renderStats(stats) {
  const mib = (bytes) => (bytes / 1048576).toFixed(1);
  $("broker").textContent = `v${stats.version} · up ${Math.round(stats.uptime_seconds)} s · ` +
    `${stats.connections} connections · ${stats.sessions} sessions · ${formatRate(publishRate())} msgs/s in · ` +
    `${mib(stats.data_bytes)} of ${mib(stats.map_size)} MiB · sync ${stats.sync}`;
}

function renderTopics(topics, now) {
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
    tr.title = "show and tail this topic";
    tr.addEventListener("click", () => {
      startTail(topic.topic);
      openTopic(topic.topic).catch((error) => setStatus(`topic ${topic.topic}: ${error.message}`, true));
    });
    return tr;
  });
  previousTopics = samples;
  $("topics").tBodies[0].replaceChildren(...(rows.length ? rows : [row([emptyCell("no topics yet", 7)])]));
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
  session.token = $("login-token").value;
  $("login-token").value = "";
  openDashboard();
});
$("sign-out").addEventListener("click", () => signOut("Token forgotten."));
$("publish-form").addEventListener("submit", publish);
start();
