// One topic in detail: its log, the configuration that applies to it, its durable subscribers
// with their floors and lag, and its last messages; and trim and delete, each confirmed in the
// page by typing the topic's name.
import { $, api, element, emptyCell, number, payloadText, row, segment, time } from "/console/common.js";

/** How many of the latest messages the detail lists. */
const LAST_MESSAGES = 10;

/** How much of a payload the detail shows. */
const PAYLOAD_CHARACTERS = 300;

/** The topic shown; null when the detail is closed. */
let shown = null;
/** The log the last messages were read from: read again only when it changed. */
let listed = null;

export function openTopic(name) {
  shown = name;
  listed = null;
  $("detail-name").textContent = name;
  $("detail-result").textContent = "";
  $("trim-to").value = "";
  $("trim-force").checked = false;
  $("topic-detail").hidden = false;
  return loadTopic();
}

function closeTopic() {
  shown = null;
  $("topic-detail").hidden = true;
}

/** Fetches and shows the open topic; API errors other than 404 reach the caller. */
export async function loadTopic() {
  const name = shown;
  if (name === null) return;
  let info, read;
  try {
    info = await api(`/v1/admin/topics/${segment(name)}`);
    const log = `${name} ${info.epoch} ${info.first} ${info.head}`;
    if (log !== listed) {
      // Versions above `from`: the last LAST_MESSAGES up to the head (fewer when trimmed).
      const from = Math.max(info.first - 1, info.head - LAST_MESSAGES, 0);
      read = await api(`/v1/topics/${segment(name)}/messages?from=${from}&limit=${LAST_MESSAGES}`);
      listed = log;
    }
  } catch (error) {
    if (error.status !== 404) throw error;
    if (name === shown) showGone(name);
    return;
  }
  if (name !== shown) return;
  $("detail-body").hidden = false;
  $("detail-gone").hidden = true;
  renderFacts($("detail-summary"), [
    ["epoch", info.epoch], ["first", info.first], ["head", info.head], ["messages", info.messages],
    ["bytes", info.bytes], ["subscribers", info.subscribers], ["connected", info.connected], ["lag", info.lag],
  ]);
  renderConfig(info.config);
  renderSubscribers(info.durable_subscriptions ?? []);
  if (read) renderMessages(read.messages);
  $("trim-to").max = info.head;
  $("topic-detail").dataset.head = info.head;
}

function showGone(name) {
  $("detail-body").hidden = true;
  $("detail-gone").hidden = false;
  $("detail-gone").textContent = `There is no topic ${name} now.`;
}

/** Term and value pairs as a <dl>; each <dd> says which term it belongs to (data-fact). */
function renderFacts(list, facts) {
  list.replaceChildren(...facts.flatMap(([term, value]) => {
    const dd = element("dd", typeof value === "number" ? value.toLocaleString("en") : value);
    dd.dataset.fact = term;
    return [element("dt", term), dd];
  }));
}

const unlimited = (value, format = (v) => v.toLocaleString("en")) => (value === null ? "unlimited" : format(value));
const duration = (ms) => {
  for (const [unit, size] of [["d", 86400000], ["h", 3600000], ["min", 60000], ["s", 1000]]) {
    if (ms >= size) return `${Number((ms / size).toFixed(1))} ${unit}`;
  }
  return `${ms} ms`;
};

function renderConfig(config) {
  renderFacts($("detail-config"), [
    ["from", config.pattern === null ? "the global settings" : `entry ${config.pattern}`],
    ["retention", config.retention],
    ["max_messages", unlimited(config.max_messages)],
    ["max_bytes", unlimited(config.max_bytes)],
    ["max_age", unlimited(config.max_age_ms, duration)],
    ["max_message_bytes", config.max_message_bytes.toLocaleString("en")],
    ["dedup_window", duration(config.dedup_window_ms)],
  ]);
}

function renderSubscribers(subscriptions) {
  const rows = subscriptions.map((sub) => {
    const tr = row([
      element("td", sub.client_id, "name"),
      element("td", sub.connected ? "connected" : "away", sub.connected ? "state connected" : "state away"),
      number(sub.ack_floor, "number floor"), number(sub.lag, sub.lag > 0 ? "number lag lagging" : "number lag"),
      element("td", sub.oldest_unacked_age_ms === undefined ? "–" : duration(sub.oldest_unacked_age_ms), "number"),
    ]);
    tr.dataset.client = sub.client_id;
    return tr;
  });
  $("detail-subscribers").tBodies[0].replaceChildren(...(rows.length ? rows : [row([emptyCell("no durable subscribers", 5)])]));
}

const shorten = (text) => (text.length > PAYLOAD_CHARACTERS ? `${text.slice(0, PAYLOAD_CHARACTERS)}…` : text);

function renderMessages(messages) {
  const rows = messages.slice().reverse().map((message) => {
    const tr = row([
      number(message.version, "number version"), element("td", time(message.ts), "number"),
      element("td", shorten(payloadText(message.data, message.data_b64)), "payload"),
    ]);
    tr.dataset.version = message.version;
    return tr;
  });
  $("detail-messages").tBodies[0].replaceChildren(...(rows.length ? rows : [row([emptyCell("no stored messages", 3)])]));
}

// Trim and delete: the dialog's confirm button stays disabled until the topic's name is typed.

/** Resolves true when the operator confirms by typing `name`, false on cancel or Escape. */
function confirmByName(title, text, action, name) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-name").textContent = name;
  $("confirm-input").value = "";
  $("confirm-ok").textContent = action;
  $("confirm-ok").disabled = true;
  dialog.returnValue = "";
  dialog.dataset.expected = name;
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
  });
}

$("confirm-input").addEventListener("input", () => {
  $("confirm-ok").disabled = $("confirm-input").value !== $("confirm").dataset.expected;
});
$("confirm-cancel").addEventListener("click", () => $("confirm").close("cancel"));

function report(text, isError = false) {
  $("detail-result").textContent = text;
  $("detail-result").classList.toggle("error", isError);
}

async function trim(event) {
  event.preventDefault();
  const name = shown;
  const text = $("trim-to").value.trim();
  if (!/^[0-9]+$/.test(text)) return report("trim through: a version, a whole number", true);
  const to = Number(text);
  const force = $("trim-force").checked;
  const consequence = force
    ? "Subscribers that have not acked them get a gap."
    : "Refused if a durable subscriber has not acked them.";
  if (!(await confirmByName(`Trim ${name}`, `Deletes versions 1 to ${to} of ${name}. ${consequence}`, "Trim", name))) {
    return report("trim cancelled");
  }
  try {
    const result = await api(`/v1/admin/topics/${segment(name)}/trim`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ to, force }),
    });
    report(`trimmed ${name}: ${result.removed} removed, now ${result.first}…${result.head}`);
  } catch (error) {
    report(`trim refused: ${error.message}${error.status === 409 ? " (force trims anyway)" : ""}`, true);
  }
  // Shown at once; a failure to read it shows at the next refresh.
  await loadTopic().catch(() => {});
}

async function deleteTopic() {
  const name = shown;
  const text = `Deletes the log of ${name}: its subscribers get reset, and a later publish starts at version 1.`;
  if (!(await confirmByName(`Delete ${name}`, text, "Delete", name))) return report("delete cancelled");
  try {
    await api(`/v1/admin/topics/${segment(name)}`, { method: "DELETE" });
    report(`deleted ${name}`);
  } catch (error) {
    report(`delete refused: ${error.message}`, true);
  }
  await loadTopic().catch(() => {});
}

$("trim-form").addEventListener("submit", trim);
$("delete-topic").addEventListener("click", deleteTopic);
$("detail-close").addEventListener("click", closeTopic);
