// What the console's modules share: the admin token, API requests and small DOM helpers.

const TOKEN_KEY = "ferry-console-token";

export const $ = (id) => document.getElementById(id);

/** The operator's admin token, kept per tab (sessionStorage). */
export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) {
    if (value === null) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, value);
  },
};

export class APIError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
  }
}

/** A request with the admin token; the JSON answer, or an APIError with the broker's message. */
export async function api(path, init = {}) {
  const headers = { ...init.headers };
  const token = session.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { ...init, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new APIError(response.status, body);
  return body;
}

/** A path segment: a topic's `/` is sent as `%2F`. */
export const segment = (name) => encodeURIComponent(name);

/** An element with `text` (never parsed as HTML: names and payloads come from clients). */
export function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

export function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.append(cell);
  return tr;
}

export const number = (value, className = "number") => element("td", value.toLocaleString("en"), className);
export const time = (ms) => new Date(ms).toLocaleTimeString();

export function emptyCell(text, span) {
  const cell = element("td", text, "empty");
  cell.colSpan = span;
  return cell;
}

/** A payload as text: JSON as written, bytes as UTF-8 when they are, else base64. */
export function payloadText(data, dataB64) {
  if (data !== undefined) return JSON.stringify(data);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(atob(dataB64), (c) => c.charCodeAt(0)));
  } catch {
    return `base64 ${dataB64}`;
  }
}

/** A number with at most three significant figures: 0.4, 12, 1.23k, 3.4M; "–" for none. */
export function compact(value) {
  if (value === null || value === undefined) return "–";
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${Number((value / 1e6).toPrecision(3))}M`;
  if (abs >= 1e3) return `${Number((value / 1e3).toPrecision(3))}k`;
  return abs < 10 && !Number.isInteger(value) ? value.toFixed(1) : String(Math.round(value));
}
