// ferry.js: the browser client of Ferry's wire protocol (PROTOCOL.md), with no dependencies.
// It mirrors the Swift client (Sources/FerryClient): reconnects with backoff and full jitter,
// resumes its durable session, removes duplicates by (topic, version), and keeps an outbox of
// publishes. Its state lives in `storage` (localStorage by default), so a reloaded page resumes.
//
//     import { FerryClient } from "/v1/ferry.js";
//     const client = new FerryClient("ws://127.0.0.1:8080/v1/ws", { clientId: "page-1" });
//     client.subscribe("orders", (message) => console.log(message.version, message.data));
//     const version = await client.publish("orders", { id: 7 });

/**
 * Where a client's connection stands, as the Swift client's `ConnectionState`.
 * @typedef {"disconnected"|"connecting"|"connected"|"reconnecting"|"closed"|"failed"} FerryState
 */

/**
 * A message handed to a subscriber.
 * @typedef {object} FerryMessage
 * @property {string} topic
 * @property {number} version
 * @property {number} ts commit time, ms since 1970
 * @property {*} [data] the JSON value, for a message published as JSON
 * @property {string} [dataB64] the bytes in base64, for any other message
 * @property {Object<string,string>} [headers]
 * @property {Array<object>} events the `gap`/`reset` events announced since the previous message
 * @property {function():void} ack acks this version (and every one before it)
 */

/** Close codes after which reconnecting cannot succeed (PROTOCOL.md, "WebSocket close codes"). */
const FINAL_CLOSE_CODES = new Set([4001, 4009, 4010]);

/** Upgrade refusals that the same credentials cannot get past (401 bad or expired token, 403). */
const FINAL_STATUSES = new Set([401, 403]);

/** `url` (ws:, wss:) with `token` as its `token` query parameter, when there is one. */
function withToken(url, token) {
  if (token == null) return url;
  return `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}

/**
 * The upper bound of the wait before attempt `attempt` (0-based): `initial × factor^attempt`, capped.
 * @param {{initialMs:number, factor:number, capMs:number}} backoff
 * @param {number} attempt
 */
export function backoffCeiling(backoff, attempt) {
  return Math.min(backoff.capMs, backoff.initialMs * Math.pow(backoff.factor, Math.max(0, attempt)));
}

/** A random msg_id; `crypto.randomUUID` exists only in secure contexts, so build one from random bytes. */
/** A `*` or `>` token makes a subscription a pattern (topic names have neither). */
function isPattern(name) {
  return name.split(".").some((token) => token === "*" || token === ">");
}

function newMessageID() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A Storage-like object in memory, for when neither `storage` nor localStorage is there. */
export class MemoryStorage {
  constructor() { this.items = new Map(); }
  getItem(key) { return this.items.has(key) ? this.items.get(key) : null; }
  setItem(key, value) { this.items.set(key, String(value)); }
  removeItem(key) { this.items.delete(key); }
}

/**
 * A connection to a Ferry broker that survives disconnects, broker restarts and page reloads.
 */
export class FerryClient {
  /**
   * Starts connecting at once; subscribe in the same turn so no message is missed.
   * @param {string} url the broker's WebSocket URL, `ws://host:port/v1/ws` (http(s) URLs are converted).
   * @param {object} [options]
   * @param {string} [options.clientId] a durable session's id; without one the client is ephemeral.
   * @param {string|function():(string|Promise<string>)} [options.token] with authentication on:
   *   sent as `?token=…` on the upgrade (browsers cannot set headers on a WebSocket). A function
   *   is called before every attempt, so it can return a fresh token when the last expired; an
   *   error it throws fails that attempt (retried with backoff), and with a function a close
   *   4001 (token expired) reconnects instead of stopping.
   * @param {Storage} [options.storage] where the resume token, positions and outbox live (default localStorage).
   * @param {string} [options.storageKey] the key in `storage` (default `ferry:<clientId>`); outbox
   *   entries are kept under `<storageKey>:out:<n>`.
   * @param {number} [options.outboxLimit] publishes waiting for confirmation before `publish`
   *   rejects with code `outbox_full` (10,000).
   * @param {{initialMs:number, factor:number, capMs:number}} [options.backoff] default 100 ms ×2, cap 30 s.
   * @param {number} [options.stableAfterMs] a connection that lasted this long resets the backoff (10 s).
   * @param {number} [options.connectTimeoutMs] how long getting the token and opening the
   *   WebSocket (TCP, TLS, upgrade) may take before the attempt is retried (10 s).
   * @param {number} [options.helloTimeoutMs] how long a hello may go unanswered (10 s).
   */
  constructor(url, options = {}) {
    this.url = url.replace(/^http/, "ws");
    this.token = options.token;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10000;
    this.outboxLimit = options.outboxLimit ?? 10000;
    this.backoff = options.backoff ?? { initialMs: 100, factor: 2, capMs: 30000 };
    this.stableAfterMs = options.stableAfterMs ?? 10000;
    this.helloTimeoutMs = options.helloTimeoutMs ?? 10000;
    this.storage = options.storage ?? globalThis.localStorage ?? new MemoryStorage();
    this.storageKey = options.storageKey ?? `ferry:${options.clientId ?? ""}`;
    /** @type {FerryState} */
    this.state = "disconnected";
    this.listeners = { state: [], gap: [], reset: [], error: [] };
    /** The small record written at every ack: client id, resume token, positions, pending unsubscribes. */
    this.saved = this.load(options.clientId);
    /** Publishes waiting for confirmation, oldest first, each stored under its own key (`seq`). */
    this.pending = this.loadOutbox();
    /** Per topic: handler, start, epoch, versions delivered/acked, and this connection's view. */
    this.topics = new Map();
    /** Per pattern subscription: handler, start, window, and whether this connection has it. A
     * topic a pattern delivers is an entry of `topics` whose `via` names the pattern. */
    this.patterns = new Map();
    /** Callers waiting for a publish's version, by msg_id. */
    this.waiters = new Map();
    /** Publish request ids of the current connection → msg_id. */
    this.inFlight = new Map();
    /** Unsubscribe request ids of the current connection → topic. */
    this.leavingRequests = new Map();
    this.nextRequestID = 1;
    this.failures = 0;
    /** Numbers the attempts, so an answer that comes after its attempt ended is ignored. */
    this.attempts = 0;
    this.socket = null;
    this.retryTimer = null;
    this.silenceTimer = null;
    this.connectedAt = 0;
    this.hint = () => this.onHint();
    this.visibilityHint = () => { if (globalThis.document?.visibilityState === "visible") this.onHint(); };
    globalThis.addEventListener?.("online", this.hint);
    globalThis.document?.addEventListener?.("visibilitychange", this.visibilityHint);
    this.connect();
  }

  /**
   * Listens to `state` (state, detail), `gap` ({topic, from, to}), `reset` ({topic, old_epoch, epoch})
   * or `error` (broker errors not tied to a publish).
   * @param {"state"|"gap"|"reset"|"error"} event
   * @param {function} listener
   * @returns {function():void} removes the listener
   */
  on(event, listener) {
    const list = this.listeners[event];
    if (!list) throw new Error(`unknown event ${event}`);
    list.push(listener);
    return () => list.splice(list.indexOf(listener) >>> 0, 1);
  }

  /**
   * Subscribes `onMessage` to `topic`. Each version reaches it once, in order; it is acked when
   * the handler returns (or its promise resolves) unless `autoAck` is false, then call `message.ack()`.
   * `topic` may be a pattern (`orders.*`, `chat.>`): the handler gets every matching topic's
   * messages, those created later included, each topic in order (`message.topic` says which).
   * With `group`, the subscription is this client's share of a work queue (a topic with
   * `work_queue` retention): the group's members get each message once between them, in any
   * order, each acked on its own and then deleted; one unacked when the connection drops comes again.
   * @param {string} topic
   * @param {function(FerryMessage):(void|Promise<void>)} onMessage
   * @param {{from?: "stored"|"latest"|"earliest"|number, window?: number, autoAck?: boolean, group?: string}} [options]
   */
  subscribe(topic, onMessage, options = {}) {
    if (this.isFinished) throw new Error(`the client is ${this.state}`);
    this.saved.leaving = this.saved.leaving.filter((name) => name !== topic);
    if (isPattern(topic)) {
      this.patterns.set(topic, {
        handler: onMessage, autoAck: options.autoAck ?? true, start: options.from, window: options.window,
        live: this.patterns.get(topic)?.live ?? false,
      });
      if (this.state === "connected") this.sendSubscribe(topic);
      return;
    }
    const position = this.saved.topics[topic];
    const existing = this.topics.get(topic);
    this.topics.set(topic, {
      handler: onMessage,
      autoAck: options.autoAck ?? true,
      start: options.from,
      window: options.window,
      group: options.group,
      epoch: existing?.epoch ?? position?.epoch ?? null,
      delivered: existing?.delivered ?? position?.acked ?? 0,
      acked: existing?.acked ?? position?.acked ?? 0,
      live: false, received: 0, ackSent: 0,
      announced: [],
      // Handlers run one at a time per topic, so acks follow processing order.
      chain: existing?.chain ?? Promise.resolve(),
    });
    if (this.state === "connected") this.sendSubscribe(topic);
  }

  /**
   * Ends the subscription; a durable one and its position are removed from the broker, at the
   * next connection if the client is offline now (the broker would otherwise restore it).
   * @param {string} topic
   */
  unsubscribe(topic) {
    this.topics.delete(topic);
    delete this.saved.topics[topic];
    if (this.patterns.delete(topic)) {
      for (const [name, entry] of this.topics) if (entry.via === topic) this.topics.delete(name);
    }
    // An ephemeral subscription ends with its connection anyway.
    if (this.saved.clientId && !this.saved.leaving.includes(topic)) this.saved.leaving.push(topic);
    this.save();
    this.sendUnsubscribe(topic);
  }

  /**
   * Publishes `data` (any JSON value). The message waits in the outbox (kept in storage) until
   * the broker confirms it, across reconnects and reloads; its msg_id makes a resend harmless.
   * @param {string} topic
   * @param {*} data
   * @param {{msgId?: string, headers?: Object<string,string>}} [options]
   * @returns {Promise<number>} the message's version; rejects with code `outbox_full` when
   *   `outboxLimit` publishes are already waiting.
   */
  publish(topic, data, options = {}) {
    if (this.isFinished) return Promise.reject(new Error(`the client is ${this.state}`));
    const entry = { topic, data, msg_id: options.msgId ?? newMessageID() };
    if (options.headers) entry.headers = options.headers;
    // The same msg_id again is the same message: one entry, every caller gets its version.
    const queued = this.pending.some((waiting) => waiting.msg_id === entry.msg_id);
    if (!queued && this.pending.length >= this.outboxLimit) {
      const error = new Error(`the outbox holds ${this.pending.length} unconfirmed publishes`);
      return Promise.reject(Object.assign(error, { code: "outbox_full" }));
    }
    const confirmed = new Promise((resolve, reject) => {
      const list = this.waiters.get(entry.msg_id) ?? [];
      list.push({ resolve, reject });
      this.waiters.set(entry.msg_id, list);
    });
    if (!queued) {
      // Stored before it is sent, so a reload resends it with the same msg_id.
      entry.seq = this.saved.outboxNext++;
      this.pending.push(entry);
      this.store(`${this.storageKey}:out:${entry.seq}`, entry);
      this.save();
      if (this.state === "connected") this.sendPublish(entry);
    }
    return confirmed;
  }

  /** Publishes waiting for the broker's confirmation, oldest first. */
  get outbox() {
    return this.pending.map(({ seq, ...entry }) => entry);
  }

  /** Closes the connection for good; the outbox and positions stay in storage for the next page. */
  close() {
    if (this.isFinished) return;
    this.finish("closed");
  }

  // Connection loop

  get isFinished() {
    return this.state === "closed" || this.state === "failed";
  }

  /**
   * Starts an attempt. Each phase has a deadline, enforced by the silence watchdog: getting the
   * token and opening the WebSocket `connectTimeoutMs`, then the hello `helloTimeoutMs`.
   */
  connect() {
    this.setState("connecting");
    const attempt = ++this.attempts;
    const current = () => attempt === this.attempts && this.state === "connecting";
    this.heartbeatMs = (this.connectTimeoutMs * 2) / 5;
    this.heard();
    this.watchSilence();
    Promise.resolve()
      .then(() => (typeof this.token === "function" ? this.token() : this.token))
      .then(
        (token) => { if (current()) this.open(token, current); },
        (error) => { if (current()) this.connectionLost(null, `the token provider failed: ${error}`); });
  }

  /** Opens the WebSocket of the attempt that `current` tells is still on. */
  open(token, current) {
    let socket;
    try {
      socket = new WebSocket(withToken(this.url, token));
    } catch (error) {
      this.connectionLost(null, String(error));
      return;
    }
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      // Until welcome says the broker's heartbeat, an unanswered hello counts as silence.
      this.heartbeatMs = (this.helloTimeoutMs * 2) / 5;
      this.heard();
      const hello = { op: "hello" };
      if (this.saved.clientId) hello.client_id = this.saved.clientId;
      if (this.saved.resumeToken) hello.resume_token = this.saved.resumeToken;
      this.send(hello);
    };
    socket.onmessage = (event) => this.received(event.data);
    socket.onclose = (event) => {
      if (opened) return this.connectionLost(event.code, event.reason);
      this.detach();
      this.askWhyRefused(token, current);
    };
  }

  /**
   * The upgrade failed, and the WebSocket API never says why: ask the broker's check endpoint,
   * which applies the upgrade's checks (PROTOCOL.md, "Transport"). 401 and 403 stop the client;
   * 503 and 429 wait at least their `Retry-After`; anything else is retried as a network failure.
   */
  askWhyRefused(token, current) {
    const url = new URL(this.url);
    url.protocol = url.protocol === "wss:" ? "https:" : "http:";
    url.pathname = `${url.pathname.replace(/\/$/, "")}/check`;
    url.search = "";
    if (token != null) url.searchParams.set("token", token);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.connectTimeoutMs);
    fetch(url, { cache: "no-store", signal: controller.signal })
      .then(async (response) => {
        if (response.ok) return null;
        const body = await response.json().catch(() => null);
        const retryAfter = Number(response.headers.get("Retry-After"));
        return {
          status: response.status,
          code: body?.error?.code ?? (response.status === 403 ? "forbidden" : "unauthorized"),
          message: body?.error?.message ?? `HTTP ${response.status}`,
          retryAfterMs: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : 0,
        };
      })
      .catch(() => null)
      .then((refusal) => {
        clearTimeout(timer);
        if (!current()) return;
        if (refusal && FINAL_STATUSES.has(refusal.status)) {
          const { retryAfterMs, ...detail } = refusal;
          return this.finish("failed", detail);
        }
        if (!refusal) return this.connectionLost(null, "the upgrade failed");
        this.connectionLost(null, `refused with HTTP ${refusal.status}: ${refusal.code}`, refusal.retryAfterMs, refusal.status);
      });
  }

  /** Forgets the current socket: none of its events may reach the client any more. */
  detach() {
    const socket = this.socket;
    this.socket = null;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = null;
    if (socket.readyState <= 1) socket.close();
  }

  /**
   * The connection ended, was found dead, or never opened. A dead one is abandoned without
   * waiting for its close handshake, which a dead network never completes. The next attempt
   * waits the backoff, and at least `floorMs` (a refusal's `Retry-After`).
   */
  connectionLost(code, reason, floorMs = 0, status = undefined) {
    if (!this.socket && this.state !== "connecting") return;
    this.detach();
    clearTimeout(this.silenceTimer);
    this.inFlight.clear();
    this.leavingRequests.clear();
    for (const topic of this.topics.values()) {
      topic.live = false;
      topic.received = 0;
      topic.ackSent = 0;
    }
    for (const pattern of this.patterns.values()) pattern.live = false;
    if (this.isFinished) return;
    // A token function can replace a token that expired on an open connection.
    if (code != null && FINAL_CLOSE_CODES.has(code) && !(code === 4001 && typeof this.token === "function")) {
      this.finish("failed", { code, reason });
      return;
    }
    if (this.state === "connected" && Date.now() - this.connectedAt >= this.stableAfterMs) this.failures = 0;
    const delay = Math.max(floorMs, Math.random() * backoffCeiling(this.backoff, this.failures));
    this.failures += 1;
    this.setState("reconnecting", { attempt: this.failures, delay, code, reason, status });
    this.retryTimer = setTimeout(() => this.retryNow(), delay);
  }

  /** Ends the backoff wait now. */
  retryNow() {
    if (this.state !== "reconnecting") return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  /** The network came back or the page became visible: retry now, or probe a quiet connection. */
  onHint() {
    if (this.state === "reconnecting") {
      this.retryNow();
    } else if (this.state === "connected" && !this.pinged) {
      this.send({ op: "ping" });
      this.pinged = true;
    }
  }

  heard() {
    this.lastHeard = Date.now();
    this.pinged = false;
  }

  /**
   * Browsers answer the broker's WebSocket pings without telling the page, so silence is
   * measured on text frames: after one heartbeat the client asks for a pong, and after 2.5 it
   * declares the connection dead.
   */
  watchSilence() {
    clearTimeout(this.silenceTimer);
    const silence = Date.now() - this.lastHeard;
    const limit = this.heartbeatMs * 2.5;
    if (silence >= limit) {
      this.connectionLost(null, this.state === "connected" ? "silent" : "timeout");
      return;
    }
    let wait = limit - silence;
    if (silence < this.heartbeatMs) {
      wait = this.heartbeatMs - silence;
    } else if (!this.pinged && this.state === "connected") {
      this.send({ op: "ping" });
      this.pinged = true;
    }
    this.silenceTimer = setTimeout(() => this.watchSilence(), wait);
  }

  // Frames from the broker

  received(text) {
    this.heard();
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    switch (frame.op) {
      case "welcome": return this.welcomed(frame);
      case "subscribed": {
        if (frame.matched !== undefined) {
          const pattern = this.patterns.get(frame.topic);
          if (pattern) pattern.live = true;
          return;
        }
        if (frame.pattern) this.adopt(frame.topic, frame.pattern, frame.epoch);
        const topic = this.topics.get(frame.topic);
        if (!topic) return;
        topic.epoch = frame.epoch;
        topic.live = true;
        topic.ackSent = frame.from - 1;
        this.remember(frame.topic, topic);
        return;
      }
      case "msg": return this.deliver(frame);
      case "published": return this.confirm(frame.id, frame.version, null);
      case "unsubscribed": return this.left(frame.topic);
      case "gap": return this.announce("gap", frame);
      case "reset": {
        const topic = this.topics.get(frame.topic);
        if (topic) {
          topic.epoch = frame.epoch;
          topic.delivered = topic.acked = topic.ackSent = 0;
          this.remember(frame.topic, topic);
        }
        return this.announce("reset", frame);
      }
      case "error":
        if (frame.id != null && this.inFlight.has(frame.id)) {
          return this.confirm(frame.id, null, Object.assign(new Error(frame.message), { code: frame.code }));
        }
        // `not_subscribed`: an earlier connection's unsubscribe went through before its answer was lost.
        if (frame.id != null && this.leavingRequests.has(frame.id)) return this.left(this.leavingRequests.get(frame.id));
        return this.emit("error", frame);
    }
  }

  welcomed(welcome) {
    this.saved.clientId = welcome.client_id ?? this.saved.clientId;
    this.saved.resumeToken = welcome.resume_token;
    this.save();
    this.heartbeatMs = Math.max(0.1, welcome.heartbeat) * 1000;
    this.connectedAt = Date.now();
    this.setState("connected", { resumed: welcome.resumed });
    for (const { pattern } of welcome.patterns ?? []) {
      const entry = this.patterns.get(pattern);
      if (entry) entry.live = true;
    }
    for (const restored of welcome.subscriptions ?? []) {
      if (restored.pattern) this.adopt(restored.topic, restored.pattern, restored.epoch);
      const topic = this.topics.get(restored.topic);
      if (!topic) continue;
      topic.live = true;
      topic.ackSent = restored.ack_floor;
      topic.epoch ??= restored.epoch;
    }
    for (const name of this.saved.leaving) this.sendUnsubscribe(name);
    for (const [name, topic] of this.topics) if (!topic.live && !topic.via) this.sendSubscribe(name);
    for (const [name, pattern] of this.patterns) if (!pattern.live) this.sendSubscribe(name);
    for (const entry of this.pending) this.sendPublish(entry);
    this.watchSilence();
  }

  deliver(frame) {
    const topic = this.topics.get(frame.topic);
    if (!topic) return;
    topic.received = Math.max(topic.received, frame.version);
    // A queue group's messages come in any order, each once per hand-out: no version order to keep.
    if (topic.group || frame.version > topic.delivered) {
      topic.delivered = frame.version;
      const epoch = topic.epoch;
      const message = {
        topic: frame.topic, version: frame.version, ts: frame.ts, data: frame.data, dataB64: frame.data_b64,
        headers: frame.headers, events: topic.announced,
        ack: () => this.ack(frame.topic, frame.version, epoch),
      };
      topic.announced = [];
      const owner = topic.via ? this.patterns.get(topic.via) : topic;
      topic.chain = topic.chain.then(async () => {
        try {
          await owner?.handler(message);
          if (owner?.autoAck) message.ack();
        } catch (error) {
          // An application error must not stop the topic: report it and leave the message unacked.
          this.emit("error", { code: "handler_failed", topic: frame.topic, version: frame.version, error });
        }
      });
    }
    this.flushAck(frame.topic);
  }

  // A message handed out before a `reset` names a version of the old log: acking it acks nothing.
  ack(name, version, epoch) {
    const topic = this.topics.get(name);
    if (topic?.group) {
      // One message, now: a member's acks are not cumulative. Unsent, it comes again later.
      if (topic.live && topic.epoch === epoch) this.send({ op: "ack", topic: name, version });
      return;
    }
    if (!topic || topic.epoch !== epoch || version <= topic.acked) return;
    topic.acked = version;
    this.remember(name, topic);
    this.flushAck(name);
  }

  confirm(requestID, version, error) {
    const id = this.inFlight.get(requestID);
    if (id === undefined) return;
    this.inFlight.delete(requestID);
    const index = this.pending.findIndex((entry) => entry.msg_id === id);
    if (index >= 0) {
      const [entry] = this.pending.splice(index, 1);
      this.storage.removeItem(`${this.storageKey}:out:${entry.seq}`);
      this.saved.outboxFirst = this.pending[0]?.seq ?? this.saved.outboxNext;
      this.save();
    }
    for (const waiter of this.waiters.get(id) ?? []) error ? waiter.reject(error) : waiter.resolve(version);
    this.waiters.delete(id);
  }

  /** The broker no longer has the durable subscription: stop asking at each connection. */
  left(name) {
    const before = this.saved.leaving.length;
    this.saved.leaving = this.saved.leaving.filter((topic) => topic !== name);
    if (this.saved.leaving.length !== before) this.save();
  }

  announce(kind, frame) {
    this.topics.get(frame.topic)?.announced.push({ type: kind, ...frame });
    this.emit(kind, frame);
  }

  // Frames to the broker

  send(frame) {
    if (this.socket?.readyState === 1) this.socket.send(JSON.stringify(frame));
  }

  /** A topic the broker delivers through `pattern`: kept like a subscribed topic, with the
   * position this page saved for it (of the same epoch). */
  adopt(name, pattern, epoch) {
    if (!this.patterns.has(pattern)) return;
    const existing = this.topics.get(name);
    // A topic subscription of the application keeps its own handler.
    if (existing?.handler) return;
    const position = this.saved.topics[name]?.epoch === epoch ? this.saved.topics[name] : undefined;
    this.topics.set(name, {
      handler: null, via: pattern, epoch,
      delivered: existing?.delivered ?? position?.acked ?? 0,
      acked: existing?.acked ?? position?.acked ?? 0,
      live: existing?.live ?? false, received: existing?.received ?? 0, ackSent: existing?.ackSent ?? 0,
      announced: existing?.announced ?? [],
      chain: existing?.chain ?? Promise.resolve(),
    });
  }

  sendSubscribe(name) {
    const pattern = this.patterns.get(name);
    if (pattern) {
      const frame = { op: "subscribe", topic: name };
      if (pattern.start !== undefined) frame.from = pattern.start;
      if (pattern.window !== undefined) frame.window = pattern.window;
      // Where this page stands in the pattern's topics wins, as for a topic.
      for (const [topic, entry] of this.topics) {
        if (entry.via !== name || entry.delivered === 0) continue;
        frame.positions ??= {};
        frame.positions[topic] = { epoch: entry.epoch, version: entry.delivered };
      }
      return this.send(frame);
    }
    const topic = this.topics.get(name);
    const frame = { op: "subscribe", topic: name };
    if (topic.group) {
      frame.group = topic.group;
      if (topic.window !== undefined) frame.window = topic.window;
      return this.send(frame);
    }
    // Where this page stands wins over the broker's memory when it has processed something.
    if (topic.delivered > 0) {
      frame.from = topic.delivered;
      if (topic.epoch) frame.epoch = topic.epoch;
    } else if (topic.start !== undefined) {
      frame.from = topic.start;
    }
    if (topic.window !== undefined) frame.window = topic.window;
    this.send(frame);
  }

  sendPublish({ seq, ...entry }) {
    const id = this.nextRequestID++;
    this.inFlight.set(id, entry.msg_id);
    this.send({ op: "publish", id, ...entry });
  }

  sendUnsubscribe(topic) {
    if (this.state !== "connected") return;
    const id = this.nextRequestID++;
    this.leavingRequests.set(id, topic);
    this.send({ op: "unsubscribe", id, topic });
  }

  /** Sends the highest ack the broker can take: processed, and delivered on this connection. */
  flushAck(name) {
    const topic = this.topics.get(name);
    if (!topic?.live || topic.group) return;
    const target = Math.min(topic.acked, topic.received);
    if (target <= topic.ackSent) return;
    topic.ackSent = target;
    this.send({ op: "ack", topic: name, version: target });
  }

  // Housekeeping

  setState(state, detail = {}) {
    this.state = state;
    this.emit("state", state, detail);
  }

  emit(event, ...args) {
    for (const listener of this.listeners[event].slice()) {
      try {
        listener(...args);
      } catch (error) {
        console.error("ferry.js listener failed", error);
      }
    }
  }

  finish(state, detail) {
    clearTimeout(this.retryTimer);
    clearTimeout(this.silenceTimer);
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = null;
      socket.close(1000);
    }
    globalThis.removeEventListener?.("online", this.hint);
    globalThis.document?.removeEventListener?.("visibilitychange", this.visibilityHint);
    this.setState(state, detail);
    const error = new Error(`the client is ${state}`);
    // Unconfirmed publishes stay in the outbox in storage; only this page's promises end.
    for (const list of this.waiters.values()) for (const waiter of list) waiter.reject(error);
    this.waiters.clear();
    this.save();
  }

  // Storage. The record (`storageKey`) is rewritten at every ack, so it holds only what is small:
  // token, positions and the outbox's key range. Each outbox entry has a key of its own, written
  // once when published and removed when confirmed, so a long outbox costs nothing per message.
  // Positions are written synchronously at each ack rather than throttled: a throttled write
  // would let a reload hand the application versions it already processed. The cost is one
  // small JSON write per message.

  /** The stored record; another client id's token and positions do not apply to this one. */
  load(clientId) {
    const saved = this.read(this.storageKey);
    if (!saved || (clientId !== undefined && saved.clientId !== clientId)) {
      return { clientId: clientId ?? null, resumeToken: null, topics: {}, leaving: [], outboxFirst: 0, outboxNext: 0 };
    }
    saved.topics ??= {};
    saved.leaving ??= [];
    saved.outboxFirst ??= 0;
    saved.outboxNext ??= saved.outboxFirst;
    return saved;
  }

  /** The outbox entries in the record's key range, oldest first; a missing key was confirmed. */
  loadOutbox() {
    const entries = [];
    for (let seq = this.saved.outboxFirst; seq < this.saved.outboxNext; seq++) {
      const entry = this.read(`${this.storageKey}:out:${seq}`);
      if (entry) entries.push(Object.assign(entry, { seq }));
    }
    // ferry.js before per-entry keys kept the outbox inside the record.
    const legacy = this.saved.outbox;
    delete this.saved.outbox;
    for (const entry of legacy ?? []) {
      entry.seq = this.saved.outboxNext++;
      this.store(`${this.storageKey}:out:${entry.seq}`, entry);
      entries.push(entry);
    }
    if (legacy) this.save();
    return entries;
  }

  read(key) {
    try {
      return JSON.parse(this.storage.getItem(key) ?? "null");
    } catch {
      return null;
    }
  }

  remember(name, topic) {
    this.saved.topics[name] = { epoch: topic.epoch, acked: topic.acked };
    this.save();
  }

  save() {
    this.store(this.storageKey, this.saved);
  }

  store(key, value) {
    try {
      this.storage.setItem(key, JSON.stringify(value));
    } catch (error) {
      console.error("ferry.js could not save its state", error);
    }
  }
}
