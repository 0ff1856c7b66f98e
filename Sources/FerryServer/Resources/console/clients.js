// The durable clients, a page at a time: the broker filters and pages the list
// (GET /v1/admin/clients?search=&after=&limit=), and the console fetches each listed client's
// subscriptions (one request each), so a broker with thousands of clients costs one page.
import { $, api, element, emptyCell, row, time } from "/console/common.js";

const SEARCH_DELAY_MS = 250;

const state = {
  search: "",
  /** The `after` of each page walked to so far; the last is the page shown. */
  cursors: [null],
  /** The `after` of the next page; null on the last one. */
  next: null,
  /** Counts loads, so an answer that a newer load overtook is not shown. */
  generation: 0,
};

const pageSize = () => Number($("clients-page-size").value);

/** Fetches and shows the current page; API errors reach the caller. */
export async function loadClients() {
  const generation = ++state.generation;
  const query = new URLSearchParams({ limit: pageSize() });
  if (state.search) query.set("search", state.search);
  const after = state.cursors.at(-1);
  if (after) query.set("after", after);
  let list;
  try {
    list = await api(`/v1/admin/clients?${query}`);
  } catch (error) {
    // A search the broker cannot match (a character no client id has) is said, not fatal.
    if (error.status !== 400) throw error;
    if (generation === state.generation) showRefusal(error.message);
    return;
  }
  const details = await Promise.all(list.clients.map((client) =>
    api(`/v1/admin/clients/${encodeURIComponent(client.client_id)}`).catch(() => null)));
  if (generation !== state.generation) return;
  state.next = list.next ?? null;
  renderClients(list, details);
}

function showRefusal(message) {
  $("clients-range").textContent = message;
  $("clients-range").classList.add("error");
  $("clients").tBodies[0].replaceChildren();
  $("clients-next").disabled = true;
}

function renderClients(list, details) {
  const rows = list.clients.map((client, index) => {
    const subscriptions = element("ul", undefined, "subscriptions");
    for (const sub of details[index]?.subscriptions ?? []) {
      const item = element("li", `${sub.topic}: ${sub.ack_floor} / ${sub.head}, lag ${sub.lag}`);
      item.dataset.topic = sub.topic;
      if (sub.lag > 0) item.classList.add("lagging");
      subscriptions.append(item);
    }
    if (!details[index]) subscriptions.append(element("li", `${client.subscriptions} (not fetched)`, "empty"));
    const cell = element("td", undefined, "subscriptions");
    cell.append(subscriptions);
    const tr = row([
      element("td", client.client_id, "name"),
      element("td", client.connected ? "connected" : "away", client.connected ? "state connected" : "state away"),
      cell, element("td", time(client.last_seen), "number"),
    ]);
    tr.dataset.client = client.client_id;
    return tr;
  });
  const empty = state.search ? `no client id contains “${state.search}”` : "no durable clients";
  $("clients").tBodies[0].replaceChildren(...(rows.length ? rows : [row([emptyCell(empty, 4)])]));
  const first = (state.cursors.length - 1) * pageSize();
  const range = $("clients-range");
  range.classList.remove("error");
  range.textContent = rows.length ? `${first + 1}–${first + rows.length} of ${list.total}` : `0 of ${list.total}`;
  range.dataset.total = list.total;
  $("clients-previous").disabled = state.cursors.length === 1;
  $("clients-next").disabled = state.next === null;
}

/** Shows the first page again (after the search or the page size changed). */
function restart() {
  state.cursors = [null];
  state.next = null;
  loadClients().catch((error) => showRefusal(error.message));
}

let searchTimer = null;
$("clients-search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    state.search = $("clients-search").value.trim();
    restart();
  }, SEARCH_DELAY_MS);
});
$("clients-form").addEventListener("submit", (event) => event.preventDefault());
$("clients-page-size").addEventListener("change", restart);
$("clients-next").addEventListener("click", () => {
  if (state.next === null) return;
  state.cursors.push(state.next);
  loadClients().catch((error) => showRefusal(error.message));
});
$("clients-previous").addEventListener("click", () => {
  if (state.cursors.length === 1) return;
  state.cursors.pop();
  loadClients().catch((error) => showRefusal(error.message));
});
