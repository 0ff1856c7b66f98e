// Live tail: one ephemeral ferry.js client, subscribed from the latest version, so it stores
// nothing in the broker; its state lives in memory only.
import { FerryClient, MemoryStorage } from "/v1/ferry.js";
import { $, element, payloadText, session, time } from "/console/common.js";

const TAIL_LIMIT = 100;
const tail = { client: null, topic: null, messages: [], paused: false, unseen: 0 };

export function startTail(topic) {
  stopTail();
  $("tail-topic").value = topic;
  if (!tail.client) {
    // With client authentication on, the broker takes the admin token on the upgrade.
    tail.client = new FerryClient(`${location.origin}/v1/ws`, { token: session.token, storage: new MemoryStorage() });
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

/** Ends the tail and its connection (the token it used is being forgotten). */
export function closeTail() {
  stopTail();
  tail.client?.close();
  tail.client = null;
}

function renderTailState() {
  const state = tail.client?.state ?? "off";
  $("tail-pause").textContent = tail.paused ? "Resume" : "Pause";
  const paused = tail.paused ? `, paused (${tail.unseen} new)` : "";
  $("tail-state").textContent = tail.topic
    ? `${tail.topic}: ${state}${paused} · the latest ${TAIL_LIMIT} are kept`
    : "Click a topic or name one.";
}

function renderTail() {
  const items = tail.messages.slice().reverse().map((message) => {
    const item = element("li");
    item.dataset.version = message.version;
    item.append(element("span", `#${message.version}`, "version"), element("span", time(message.ts), "time"),
      document.createTextNode(payloadText(message.data, message.dataB64)));
    return item;
  });
  $("tail").replaceChildren(...items);
  renderTailState();
}

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
