// @ts-check
/**
 * Browser client of the sensor-stream WebSocket API (contract v1, section 3), and of the alert
 * rules over the HTTP API (section 5: `AlertRulesClient`).
 *
 * No build step: import it as an ES module (the package `@sensor-stream/client`, or this file).
 * Its types (`types/*.d.ts`, one per module) are generated from the JSDoc by `make types`.
 *
 *     import { SensorStreamClient } from "@sensor-stream/client";
 *     const client = new SensorStreamClient({ url: "wss://...", token: () => fetchToken() });
 *     client.addEventListener("status", (event) => console.log(event.detail.status));
 *     client.addEventListener("readings", (event) => console.table(event.detail.readings));
 *     client.connect();
 *
 * Modules: this one is the API (requests, subscriptions, commands, de-duplication, events);
 * sensor-stream-transport.js the connection's life cycle (connect, backoff, heartbeat, token
 * refresh); sensor-stream-types.js the contract's messages and records, re-exported here.
 */

import { Transport, describe, sleep } from "./sensor-stream-transport.js";

export * from "./sensor-stream-types.js";
export { SUBPROTOCOL, decodeTokenClaims } from "./sensor-stream-transport.js";

/**
 * @import { AlertResolvedMessage, AlertRule, AlertRuleBody, AlertsMessage, AlertTriggeredMessage,
 *   ClientRequest, CommandAcceptedMessage, CommandAckMessage, CommandTimeoutMessage, ConnectionMessage,
 *   ErrorBody, ErrorMessage, HelloRequest, HistoryMessage, LatestMessage, PongMessage, Reading,
 *   ReadingsBatchMessage, ServerErrorCode, ServerMessage, SubscribedMessage, Subscription,
 *   TokenRefreshedMessage, UnitInfo, UnitsMessage } from "./sensor-stream-types.js"
 */

// --- Client API ---------------------------------------------------------------------------

/**
 * The codes of failures the client itself detects:
 * - `timeout`: no answer within the request's time; `not_connected`: there is no connection (yet);
 * - `disconnected`: the connection was lost while the request waited;
 * - `command_failed`: the device acknowledged with status `error`; `command_timeout`: it did not
 *   acknowledge in time (the server's `command:timeout`);
 * - `malformed_message`: the server sent something that is not JSON; `hello_failed`,
 *   `resubscribe_failed`, `refresh_failed`: a step of (re)connecting failed.
 * @typedef {"timeout" | "not_connected" | "disconnected" | "command_failed" | "command_timeout"
 *   | "malformed_message" | "hello_failed" | "resubscribe_failed" | "refresh_failed"} ClientErrorCode
 */

/** @typedef {ServerErrorCode | ClientErrorCode} ErrorCode */

/**
 * @typedef {object} AlertRulesOptions
 * @property {string} httpUrl the HTTP API's base URL (`httpUrl` in the dashboard's config.json)
 * @property {string | (() => string | Promise<string>)} token the JWT (the WebSocket's), or a
 *   function asked before every request
 * @property {number} [timeoutMs] how long a request may take (default 10000)
 */

/**
 * - `connecting`: first attempt under way;
 * - `connected`: the server answered `hello`;
 * - `reconnecting`: the connection was lost, refused or stopped answering; a retry is scheduled
 *   (`retryAt`) or under way;
 * - `offline`: not trying: the browser is offline (retries resume when it is back) or `close()` was called;
 * - `unauthorized`: the token is expired or malformed, or the server refused it; stays so until
 *   `connect()` is called again (e.g. with a new token via `setToken`).
 * @typedef {"connecting" | "connected" | "reconnecting" | "offline" | "unauthorized"} ConnectionStatus
 */

/**
 * Detail of the `status` event.
 * @typedef {object} StatusDetail
 * @property {ConnectionStatus} status
 * @property {string} [reason] human-readable cause of a non-connected status
 * @property {number} [retryInMs] delay before the next attempt (`reconnecting`)
 * @property {number} [retryAt] when the next attempt starts (`reconnecting`; `Date.now()` clock),
 *   for a countdown; `retryNow()` starts it at once
 * @property {number} [attempt] consecutive failed attempts so far
 */

/**
 * Detail of the `readings` event: readings never delivered before (de-duplicated by `id`).
 * @typedef {object} ReadingsDetail
 * @property {Reading[]} readings
 * @property {boolean} replay true when they were replayed after `hello` with `resume`
 * @property {string} serverTime
 */

/**
 * Detail of the `error` event: a server error no pending request claimed, or a local failure.
 * @typedef {object} ErrorDetail
 * @property {ErrorCode} code
 * @property {string} message
 * @property {Array<Record<string, unknown>>} [details]
 * @property {string} [requestId]
 */

/**
 * The events a client dispatches, for typed `addEventListener` calls.
 * @typedef {object} SensorStreamEventMap
 * @property {CustomEvent<StatusDetail>} status the connection status changed
 * @property {CustomEvent<ReadingsDetail>} readings new readings arrived
 * @property {CustomEvent<AlertTriggeredMessage | AlertResolvedMessage>} alert an alert opened or resolved
 * @property {CustomEvent<Subscription>} subscription the server confirmed a subscription
 * @property {CustomEvent<ErrorDetail>} error a server error no request claimed, or a local failure
 */

/**
 * @typedef {object} ClientOptions
 * @property {string} url WebSocket endpoint, e.g. `wss://abc.execute-api.eu-west-1.amazonaws.com/prod`
 * @property {string | (() => string | Promise<string>)} token JWT, or a function called before every
 *   connection attempt and before the current token expires (the session is then extended with
 *   `refreshToken`; with a fixed token the server ends the session at the token's expiry)
 * @property {number} [refreshAheadMs] how long before its expiry a token is replaced (default 60000)
 * @property {number} [minRetryDelayMs] backoff base (default 1000)
 * @property {number} [maxRetryDelayMs] backoff cap (default 30000)
 * @property {number} [probeIntervalMs] while the server cannot be reached, how often to check
 *   (plain HTTP, no connection) whether it is back; it is then retried within `recoveryJitterMs`
 *   (default 1000)
 * @property {number} [recoveryJitterMs] the most a retry waits once the server is back, spreading
 *   the reconnects of many browsers (default 500)
 * @property {number} [heartbeatIntervalMs] after this long without a message the client sends `ping`
 *   (default 25000; API Gateway closes connections idle for 10 minutes)
 * @property {number} [heartbeatTimeoutMs] a `ping` with no message at all in answer within this long
 *   means the connection is dead: it is dropped and replaced (default 6000)
 * @property {number} [requestTimeoutMs] how long a request waits for its answer (default 10000)
 * @property {number} [commandTimeoutMs] how long `sendCommand` waits for the ack (default 15000:
 *   the server gives up after 10 s and then sends `command:timeout`)
 * @property {number} [maxRequestsPerWindow] requests sent per `requestWindowMs` at most; more wait
 *   for their turn instead of being `throttled` by the server (100 per 10 s; default 90, which
 *   leaves room for `hello` and heartbeats)
 * @property {number} [requestWindowMs] see `maxRequestsPerWindow` (default 10000)
 * @property {number} [maxRememberedIds] reading ids kept for de-duplication (default 5000)
 * @property {number} [maxRefusals] refused handshakes in a row that mean `unauthorized` (default 2)
 * @property {number} [resumeOverlapMs] a resume starts this long before the newest reading seen, so
 *   readings that arrived out of order are not missed; the repeats are de-duplicated (default 5000)
 * @property {number} [initialResumeMs] the first `hello` asks for the readings that arrived this
 *   long before (the server replays at most 15 minutes and 1,000 readings); 0 for none (default 0)
 * @property {number} [clockOffsetMs] first estimate of the server's clock minus this browser's, until
 *   the server's own `serverTime` corrects it (default 0)
 */

/**
 * @typedef {object} CommandOptions
 * @property {number} [timeoutMs] overrides `commandTimeoutMs`
 * @property {(commandId: string) => void} [onAccepted] called when the server accepted the command
 */

/**
 * A failed request: `code` is the server's error code or one of the client's own; `status` is
 * the HTTP status of a failed HTTP API request.
 */
export class SensorStreamError extends Error {
  /**
   * @param {ErrorCode} code
   * @param {string} message
   * @param {{ requestId?: string, commandId?: string, details?: ErrorBody["details"], status?: number }} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.name = "SensorStreamError";
    /** @type {ErrorCode} */
    this.code = code;
    /** @type {string | undefined} */
    this.requestId = extra.requestId;
    /** @type {string | undefined} */
    this.commandId = extra.commandId;
    /** @type {ErrorBody["details"] | undefined} */
    this.details = extra.details;
    /** @type {number | undefined} */
    this.status = extra.status;
  }
}

/** @type {Record<number, ServerErrorCode>} what a status means when the body names no code */
const HTTP_STATUS_CODES = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  409: "conflict",
  413: "payload_too_large",
  429: "throttled",
};

/**
 * The alert rules of the token's org over the HTTP API (contract section 5), with the same JWT
 * as the WebSocket. A token limited to `units` sees and manages only rules of one of its units.
 * Failures reject with a `SensorStreamError`: the server's `code`, `message` and `details`
 * (`validation_error`: `[{field, message}]`, `field` being the body's field or `(body)`) and the
 * HTTP `status`; API Gateway's own 401/403/429 carry no code and get `unauthorized`,
 * `forbidden`, `throttled`; an unreachable API is `unavailable`, a slow one `timeout`.
 *
 *     const rules = new AlertRulesClient({ httpUrl: "https://api.example.com", token });
 *     await rules.put("freezer-warm", { metric: "temperature", max: -15, unitId: "f1", severity: "critical" });
 */
export class AlertRulesClient {
  /** @type {Required<Omit<AlertRulesOptions, "token">>} */
  #options;
  /** @type {AlertRulesOptions["token"]} */
  #token;

  /** @param {AlertRulesOptions} options */
  constructor(options) {
    this.#token = options.token;
    this.#options = { httpUrl: options.httpUrl.replace(/\/+$/, ""), timeoutMs: options.timeoutMs ?? 10000 };
  }

  /** @returns {Promise<AlertRule[]>} the rules the token may see */
  async list() {
    /** @type {{ rules: AlertRule[] }} */
    const answer = await this.#send("GET", "/alert-rules");
    return answer.rules;
  }

  /**
   * Creates the rule, or replaces the one with this id.
   * @param {string} ruleId
   * @param {AlertRuleBody} rule
   * @returns {Promise<AlertRule>} the stored rule
   */
  async put(ruleId, rule) {
    return this.#send("PUT", `/alert-rules/${encodeURIComponent(ruleId)}`, rule);
  }

  /**
   * Deletes the rule; its open alerts resolve. A rule that is not there rejects with `not_found`.
   * @param {string} ruleId
   * @returns {Promise<void>}
   */
  async delete(ruleId) {
    await this.#send("DELETE", `/alert-rules/${encodeURIComponent(ruleId)}`);
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   * @returns {Promise<any>}
   */
  async #send(method, path, body) {
    const token = typeof this.#token === "function" ? await this.#token() : this.#token;
    /** @type {Record<string, string>} */
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(this.#options.httpUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        signal: AbortSignal.timeout(this.#options.timeoutMs),
      });
    } catch (error) {
      if (error instanceof DOMException && error.name === "TimeoutError") {
        throw new SensorStreamError("timeout", `no answer to ${method} ${path} within ${this.#options.timeoutMs} ms`);
      }
      throw new SensorStreamError("unavailable", `could not reach the HTTP API: ${describe(error)}`);
    }
    const text = await response.text();
    /** @type {any} */
    let document = null;
    try {
      document = text ? JSON.parse(text) : null;
    } catch {
      // API Gateway and proxies may answer errors in plain text: the status says enough.
    }
    if (response.ok) return document;
    const error = document?.error;
    const code = error?.code ?? HTTP_STATUS_CODES[response.status] ?? (response.status >= 500 ? "unavailable" : "bad_request");
    const message = error?.message ?? document?.message ?? (text || `HTTP ${response.status}`);
    throw new SensorStreamError(code, message, { details: error?.details, status: response.status });
  }
}

/**
 * Whether a rule covers a unit, as the server decides: its `unitId`, else its `siteId`, else
 * every unit of the org.
 * @param {AlertRule | AlertRuleBody} rule
 * @param {string} unitId
 * @param {string | null} siteId
 */
export function ruleAppliesTo(rule, unitId, siteId) {
  if (rule.unitId !== undefined) return rule.unitId === unitId;
  if (rule.siteId !== undefined) return rule.siteId === siteId;
  return true;
}

/**
 * @typedef {object} PendingRequest
 * @property {string} expects the answer's `type`
 * @property {(message: any) => void} resolve
 * @property {(error: SensorStreamError) => void} reject
 * @property {ReturnType<typeof setTimeout>} timer
 * @property {string} [commandId] for `sendCommand`, once accepted
 * @property {(commandId: string) => void} [onAccepted]
 */

/**
 * @typedef {object} RequestOptions
 * @property {number} [timeoutMs]
 * @property {(commandId: string) => void} [onAccepted]
 * @property {boolean} [beforeConnected] true for `hello`, which is what makes the status `connected`
 * @property {boolean} [unmetered] not counted against `maxRequestsPerWindow` (hello, heartbeats)
 */

/**
 * Connects, says `hello`, reconnects with exponential backoff and full jitter (and at once when an
 * unreachable server answers again), checks the connection with heartbeats, resumes from the
 * newest reading seen, restores the subscription, and de-duplicates readings by `id`.
 *
 * Events (`addEventListener`, typed by {@link SensorStreamEventMap}): `status` (StatusDetail),
 * `readings` (ReadingsDetail), `alert` (AlertTriggeredMessage | AlertResolvedMessage),
 * `subscription` (Subscription), `error` (ErrorDetail).
 */
export class SensorStreamClient extends EventTarget {
  /** @type {Required<Omit<ClientOptions, "token">>} */
  #options;
  /** @type {ClientOptions["token"]} */
  #token;
  /** @type {Transport} the connection's life cycle (sensor-stream-transport.js) */
  #transport;
  /** @type {string | null} */
  #connectionId = null;
  /** @type {Subscription | null} what the caller chose last; restored after a reconnect */
  #subscription = null;
  /** @type {number | undefined} epoch ms of the newest reading seen: where a resume starts */
  #newestSeenMs;
  /** @type {Set<string>} insertion-ordered, so the oldest ids are dropped first */
  #seenIds = new Set();
  /** @type {Map<string, PendingRequest>} by requestId */
  #pending = new Map();
  /** @type {Map<string, Array<HistoryMessage | AlertsMessage | UnitsMessage>>} the parts of answers still coming */
  #answerParts = new Map();
  /** @type {Map<string, CommandAckMessage | CommandTimeoutMessage>} outcomes that beat their `command:accepted` */
  #earlyOutcomes = new Map();
  /** @type {number | undefined} the server's clock when it last sent anything (epoch ms) */
  #lastContactAt;
  /** the server's clock minus this browser's, in ms */
  #clockOffsetMs;
  /** @type {number[]} `Date.now()` of recent metered requests, oldest first */
  #recentRequests = [];
  #requestPrefix = Math.random().toString(36).slice(2, 8);
  #requestCounter = 0;

  /** @param {ClientOptions} options */
  constructor(options) {
    super();
    this.#token = options.token;
    this.#options = {
      url: options.url,
      minRetryDelayMs: options.minRetryDelayMs ?? 1000,
      maxRetryDelayMs: options.maxRetryDelayMs ?? 30000,
      probeIntervalMs: options.probeIntervalMs ?? 1000,
      recoveryJitterMs: options.recoveryJitterMs ?? 500,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 25000,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 6000,
      requestTimeoutMs: options.requestTimeoutMs ?? 10000,
      commandTimeoutMs: options.commandTimeoutMs ?? 15000,
      maxRequestsPerWindow: options.maxRequestsPerWindow ?? 90,
      requestWindowMs: options.requestWindowMs ?? 10000,
      maxRememberedIds: options.maxRememberedIds ?? 5000,
      maxRefusals: options.maxRefusals ?? 2,
      resumeOverlapMs: options.resumeOverlapMs ?? 5000,
      initialResumeMs: options.initialResumeMs ?? 0,
      refreshAheadMs: options.refreshAheadMs ?? 60000,
      clockOffsetMs: options.clockOffsetMs ?? 0,
    };
    this.#clockOffsetMs = this.#options.clockOffsetMs;
    this.#transport = new Transport(this.#options, {
      token: () => this.#token,
      serverNow: () => this.serverNow(),
      opened: (socket, token) => this.#sayHello(socket, token),
      message: (data) => this.#handleMessage(data),
      dropped: (reason) => this.#dropped(reason),
      status: (detail) => this.dispatchEvent(new CustomEvent("status", { detail })),
      ping: (timeoutMs, sentAt) => this.#ping(timeoutMs, sentAt),
      refresh: () => this.refreshToken(),
      error: (detail) => this.#emitError(detail),
    });
  }

  /**
   * @template {keyof SensorStreamEventMap} K
   * @overload
   * @param {K} type
   * @param {(this: SensorStreamClient, event: SensorStreamEventMap[K]) => void} listener
   * @param {boolean | AddEventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @overload
   * @param {string} type
   * @param {EventListenerOrEventListenerObject | null} listener
   * @param {boolean | AddEventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @param {string} type
   * @param {any} listener
   * @param {boolean | AddEventListenerOptions} [options]
   * @returns {void}
   */
  addEventListener(type, listener, options) {
    super.addEventListener(type, listener, options);
  }

  /**
   * @template {keyof SensorStreamEventMap} K
   * @overload
   * @param {K} type
   * @param {(this: SensorStreamClient, event: SensorStreamEventMap[K]) => void} listener
   * @param {boolean | EventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @overload
   * @param {string} type
   * @param {EventListenerOrEventListenerObject | null} listener
   * @param {boolean | EventListenerOptions} [options]
   * @returns {void}
   */
  /**
   * @param {string} type
   * @param {any} listener
   * @param {boolean | EventListenerOptions} [options]
   * @returns {void}
   */
  removeEventListener(type, listener, options) {
    super.removeEventListener(type, listener, options);
  }

  /** @returns {ConnectionStatus} */
  get status() {
    return this.#transport.status;
  }

  /** The server's id of the current connection, or null. */
  get connectionId() {
    return this.#connectionId;
  }

  /** @returns {Subscription | null} the subscription last confirmed by the server */
  get subscription() {
    return this.#subscription;
  }

  /**
   * The server's clock minus this browser's (ms), from the `serverTime` of `hello` and `ping`
   * answers (half the round trip taken off); the `clockOffsetMs` option until then.
   * @returns {number}
   */
  get clockOffsetMs() {
    return this.#clockOffsetMs;
  }

  /**
   * When the server last sent anything (epoch ms on the server's clock), over this connection or
   * the ones before it; undefined before the first message. Lags behind `serverNow()` while the
   * connection is quiet, lost or frozen: data is known current up to this time.
   * @returns {number | undefined}
   */
  get lastContactAt() {
    return this.#lastContactAt;
  }

  /** @returns {number} now on the server's clock (epoch ms): for ages, staleness and token expiry */
  serverNow() {
    return Date.now() + this.#clockOffsetMs;
  }

  /** @param {ClientOptions["token"]} token used from the next connection attempt on */
  setToken(token) {
    this.#token = token;
  }

  /** Starts connecting (again, after `close()` or `unauthorized`); no-op while active. */
  connect() {
    this.#transport.start();
  }

  /**
   * Closes the connection and stops reconnecting; pending requests fail with `disconnected`, and
   * the listeners on `window`/`document` are removed.
   */
  close() {
    this.#transport.close();
  }

  /**
   * While not connected (`reconnecting`, or `offline` because the browser said so), tries again
   * at once instead of waiting for the scheduled retry; an attempt still under way is replaced.
   * Does nothing when connected or after `close()`.
   */
  retryNow() {
    this.#transport.retryNow();
  }

  /**
   * Receive readings of these units/sites, or of the whole org with `{ scope: "org" }`.
   * While subscribed to the whole org, ids narrow the subscription to exactly them; on a
   * selection they are added to it.
   * @param {{ unitIds?: string[], siteIds?: string[], scope?: "org" }} selection
   * @returns {Promise<Subscription>}
   */
  async subscribe(selection) {
    /** @type {SubscribedMessage} */
    const answer = await this.#request({ action: "subscribe", ...selection }, "subscribed");
    return answer.subscription;
  }

  /**
   * Stop receiving readings of these units/sites (of a selection); without ids, of everything.
   * @param {{ unitIds?: string[], siteIds?: string[] }} selection
   * @returns {Promise<Subscription>}
   */
  async unsubscribe(selection) {
    /** @type {SubscribedMessage} */
    const answer = await this.#request({ action: "unsubscribe", ...selection }, "subscribed");
    return answer.subscription;
  }

  /**
   * @param {string} unitId
   * @returns {Promise<Reading | null>} the unit's newest reading, null if it has none
   */
  async getLatest(unitId) {
    /** @type {LatestMessage} */
    const answer = await this.#request({ action: "getLatest", unitId }, "latest");
    return answer.reading;
  }

  /**
   * A unit's readings recorded in a span, oldest first: by default the last hour, at most 300.
   * @param {string} unitId
   * @param {{ since?: string, until?: string, limit?: number }} [span] ISO-8601 times
   * @returns {Promise<{ readings: Reading[], more: boolean }>} `more`: the span held more (the
   *   newest were sent); ask again with `until` set to the oldest one's `recordedAt`
   */
  async getHistory(unitId, span = {}) {
    /** @type {HistoryMessage} */
    const answer = await this.#request({ action: "getHistory", unitId, ...span }, "history");
    return { readings: answer.readings, more: answer.more };
  }

  /**
   * The org's open alerts on the units the token allows.
   * @returns {Promise<AlertTriggeredMessage[]>}
   */
  async getAlerts() {
    /** @type {AlertsMessage} */
    const answer = await this.#request({ action: "getAlerts" }, "alerts");
    return answer.active;
  }

  /**
   * Every unit of the org that has reported (within the token's scope), quiet ones too.
   * @returns {Promise<UnitInfo[]>}
   */
  async listUnits() {
    /** @type {UnitsMessage} */
    const answer = await this.#request({ action: "listUnits" }, "units");
    return answer.units;
  }

  /**
   * Round trip to the server: resolves with its time (ISO-8601). When neither the answer nor any
   * other message comes within `heartbeatTimeoutMs`, the connection is taken for dead: it is
   * dropped and replaced, and the promise rejects (`timeout` or `disconnected`).
   * @returns {Promise<string>}
   */
  ping() {
    return this.#transport.heartbeat();
  }

  /**
   * Sends a command to a device and waits for its ack.
   * Rejects with `command_failed` (ack status `error`), `command_timeout` (the server saw no ack),
   * `timeout` (no answer at all), `disconnected`, or the server's error code (e.g. `forbidden`).
   * @param {string} deviceId
   * @param {string} command e.g. `identify`
   * @param {Record<string, unknown>} [params]
   * @param {CommandOptions} [options]
   * @returns {Promise<CommandAckMessage>}
   */
  sendCommand(deviceId, command, params = {}, options = {}) {
    return this.#request({ action: "sendCommand", deviceId, command, params }, "command:ack", {
      timeoutMs: options.timeoutMs ?? this.#options.commandTimeoutMs,
      onAccepted: options.onAccepted,
    });
  }

  /**
   * Extends the session with a fresh token (same user and org) before the current one expires;
   * done automatically when the `token` option is a function.
   * @param {string} [token] defaults to the `token` option (called again when it is a function)
   * @returns {Promise<string>} the session's new expiry (ISO-8601)
   */
  async refreshToken(token) {
    const fresh = token ?? (typeof this.#token === "function" ? await this.#token() : this.#token);
    /** @type {TokenRefreshedMessage} */
    const answer = await this.#request({ action: "refreshToken", token: fresh }, "tokenRefreshed");
    this.#transport.scheduleRefresh(fresh);
    return answer.expiresAt;
  }

  // --- Connection -----------------------------------------------------------------------------

  /**
   * The socket is open: `hello` (resuming from the newest reading seen) makes it connected.
   * @param {WebSocket} socket
   * @param {string} token
   */
  async #sayHello(socket, token) {
    /** @type {HelloRequest} */
    const hello = { action: "hello" };
    if (this.#newestSeenMs !== undefined) {
      hello.resume = { since: new Date(this.#newestSeenMs - this.#options.resumeOverlapMs).toISOString() };
    } else if (this.#options.initialResumeMs > 0) {
      hello.resume = { since: new Date(this.serverNow() - this.#options.initialResumeMs).toISOString() };
    }
    const sentAt = Date.now();
    try {
      /** @type {ConnectionMessage} */
      const answer = await this.#request(hello, "connection", { beforeConnected: true, unmetered: true });
      this.#learnClock(answer.serverTime, sentAt);
      this.#connectionId = answer.connectionId;
      this.#transport.connected();
      this.#transport.scheduleRefresh(token);
      await this.#restoreSubscription(answer.subscription);
    } catch (error) {
      if (socket !== this.#transport.socket) return;
      this.#emitError({ code: "hello_failed", message: `the server did not accept hello: ${describe(error)}` });
      this.#transport.abandon(`the server did not accept hello: ${describe(error)}`);
    }
  }

  /**
   * A new connection starts subscribed to the whole org: re-apply the caller's selection.
   * @param {Subscription} fresh the new connection's subscription
   */
  async #restoreSubscription(fresh) {
    const wanted = this.#subscription;
    if (!wanted || wanted.scope === "org") {
      this.#setSubscription(fresh);
      return;
    }
    try {
      if (wanted.unitIds.length === 0 && wanted.siteIds.length === 0) await this.unsubscribe({});
      else await this.subscribe({ unitIds: wanted.unitIds, siteIds: wanted.siteIds });
    } catch (error) {
      this.#emitError({ code: "resubscribe_failed", message: `could not restore the subscription: ${describe(error)}` });
    }
  }

  /**
   * The socket is gone or given up: what waited on it fails.
   * @param {string} reason
   */
  #dropped(reason) {
    this.#connectionId = null;
    this.#answerParts.clear();
    for (const [requestId, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new SensorStreamError("disconnected", reason, { requestId, commandId: pending.commandId }));
    }
    this.#pending.clear();
  }

  // --- Heartbeat (timed by the transport) ---------------------------------------------------

  /**
   * @param {number} timeoutMs
   * @param {number} sentAt `Date.now()` when the heartbeat started
   * @returns {Promise<string>} the server's time
   */
  async #ping(timeoutMs, sentAt) {
    /** @type {PongMessage} */
    const answer = await this.#request({ action: "ping" }, "pong", { timeoutMs, unmetered: true });
    this.#learnClock(answer.serverTime, sentAt);
    return answer.serverTime;
  }

  /**
   * @param {string} serverTime
   * @param {number} sentAt `Date.now()` when the request went out
   */
  #learnClock(serverTime, sentAt) {
    const serverMs = Date.parse(serverTime);
    if (!Number.isFinite(serverMs)) return;
    // The server read its clock somewhere in the round trip: assume the middle.
    this.#clockOffsetMs = serverMs - (sentAt + Date.now()) / 2;
  }

  // --- Requests ------------------------------------------------------------------------------

  /**
   * @param {ClientRequest} message
   * @param {string} expects
   * @param {RequestOptions} [options]
   * @returns {Promise<any>}
   */
  async #request(message, expects, options = {}) {
    const { timeoutMs = this.#options.requestTimeoutMs, onAccepted, beforeConnected = false, unmetered = false } = options;
    if (!beforeConnected) await this.#whenConnected();
    if (!unmetered) await this.#takeTurn();
    const socket = this.#transport.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      throw new SensorStreamError("not_connected", "not connected");
    }
    const requestId = `${this.#requestPrefix}-${++this.#requestCounter}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(requestId);
        reject(new SensorStreamError("timeout", `no answer to ${message.action} within ${timeoutMs} ms`, { requestId }));
      }, timeoutMs);
      this.#pending.set(requestId, { expects, resolve, reject, timer, onAccepted });
      socket.send(JSON.stringify({ ...message, requestId }));
    });
  }

  /** Waits while `maxRequestsPerWindow` requests went out in the last `requestWindowMs`. */
  async #takeTurn() {
    const { maxRequestsPerWindow, requestWindowMs } = this.#options;
    for (;;) {
      const now = Date.now();
      while (this.#recentRequests.length > 0 && this.#recentRequests[0] <= now - requestWindowMs) {
        this.#recentRequests.shift();
      }
      if (this.#recentRequests.length < maxRequestsPerWindow) {
        this.#recentRequests.push(now);
        return;
      }
      await sleep(this.#recentRequests[0] + requestWindowMs - now + 1);
    }
  }

  /** Requests made while (re)connecting wait for the connection, up to the request timeout. */
  #whenConnected() {
    if (this.#transport.status === "connected") return Promise.resolve();
    if (!this.#transport.started) {
      return Promise.reject(new SensorStreamError("not_connected", `not connected (${this.#transport.status})`));
    }
    return new Promise((resolve, reject) => {
      /** @param {CustomEvent<StatusDetail>} event */
      const onStatus = (event) => {
        const { status } = event.detail;
        if (status === "connected") finish(null);
        else if (status === "unauthorized" || (status === "offline" && !this.#transport.started)) {
          finish(new SensorStreamError("not_connected", `not connected (${status})`));
        }
      };
      const timer = setTimeout(
        () => finish(new SensorStreamError("not_connected", "not connected yet")),
        this.#options.requestTimeoutMs,
      );
      /** @param {SensorStreamError | null} error */
      const finish = (error) => {
        clearTimeout(timer);
        this.removeEventListener("status", onStatus);
        if (error) reject(error);
        else resolve(undefined);
      };
      this.addEventListener("status", onStatus);
    });
  }

  /**
   * The whole answer once its last part is in (at once for an answer in one message).
   * @template {HistoryMessage | AlertsMessage | UnitsMessage} T
   * @param {T} message
   * @returns {T | undefined}
   */
  #joinParts(message) {
    if (!message.parts || message.parts <= 1 || !message.requestId) return message;
    const key = message.requestId;
    const received = [...(this.#answerParts.get(key) ?? []), message];
    if (received.length < message.parts) {
      this.#answerParts.set(key, received);
      return undefined;
    }
    this.#answerParts.delete(key);
    received.sort((a, b) => (a.part ?? 0) - (b.part ?? 0));
    /** @type {"readings" | "active" | "units"} */
    const field = message.type === "history" ? "readings" : message.type === "alerts" ? "active" : "units";
    const whole = { ...message, [field]: received.flatMap((part) => /** @type {any} */ (part)[field]) };
    delete whole.part;
    delete whole.parts;
    return whole;
  }

  /**
   * @param {string | undefined} requestId
   * @returns {PendingRequest | undefined}
   */
  #takePending(requestId) {
    const pending = requestId ? this.#pending.get(requestId) : undefined;
    if (pending && requestId) {
      clearTimeout(pending.timer);
      this.#pending.delete(requestId);
    }
    return pending;
  }

  /** @param {CommandAckMessage | CommandTimeoutMessage} message */
  #findCommand(message) {
    if (message.requestId && this.#pending.has(message.requestId)) return message.requestId;
    for (const [requestId, pending] of this.#pending) {
      if (pending.commandId === message.commandId) return requestId;
    }
    return undefined;
  }

  // --- Messages ------------------------------------------------------------------------------

  /** @param {unknown} data */
  #handleMessage(data) {
    /** @type {ServerMessage} */
    let message;
    try {
      message = JSON.parse(String(data));
    } catch {
      this.#emitError({ code: "malformed_message", message: "the server sent a message that is not JSON" });
      return;
    }
    // Whatever it is, the server is alive and the connection works.
    this.#transport.heard();
    this.#lastContactAt = this.serverNow();
    switch (message.type) {
      case "history":
      case "alerts":
      case "units": {
        const whole = this.#joinParts(message);
        if (whole) this.#takePending(whole.requestId)?.resolve(whole);
        break;
      }
      case "connection":
      case "latest":
      case "pong":
      case "tokenRefreshed":
        this.#takePending(message.requestId)?.resolve(message);
        break;
      case "subscribed":
        this.#setSubscription(message.subscription);
        this.#takePending(message.requestId)?.resolve(message);
        break;
      case "sensor:readings:batch":
        this.#acceptBatch(message);
        break;
      case "alert:triggered":
      case "alert:resolved":
        this.dispatchEvent(new CustomEvent("alert", { detail: message }));
        break;
      case "command:accepted":
        this.#commandAccepted(message);
        break;
      case "command:ack":
      case "command:timeout":
        this.#commandOutcome(message);
        break;
      case "error":
        this.#serverError(message);
        break;
      default:
        // Newer servers may send more types; ignoring them keeps this client working.
        break;
    }
  }

  /** @param {CommandAcceptedMessage} message */
  #commandAccepted(message) {
    const pending = message.requestId ? this.#pending.get(message.requestId) : undefined;
    if (!pending) return;
    pending.commandId = message.commandId;
    pending.onAccepted?.(message.commandId);
    const early = this.#earlyOutcomes.get(message.commandId);
    if (early) {
      this.#earlyOutcomes.delete(message.commandId);
      this.#commandOutcome(early);
    }
  }

  /** @param {CommandAckMessage | CommandTimeoutMessage} message */
  #commandOutcome(message) {
    const requestId = this.#findCommand(message);
    const pending = this.#takePending(requestId);
    if (!pending) {
      // A fast device can ack before `command:accepted` (without requestId) arrives.
      this.#earlyOutcomes.set(message.commandId, message);
      if (this.#earlyOutcomes.size > 100) this.#earlyOutcomes.delete(first(this.#earlyOutcomes.keys()));
      return;
    }
    const ids = { requestId, commandId: message.commandId };
    if (message.type === "command:timeout") {
      pending.reject(new SensorStreamError("command_timeout", "the device did not acknowledge the command in time", ids));
    } else if (message.status === "error") {
      pending.reject(new SensorStreamError("command_failed", message.detail || "the device reported an error", ids));
    } else {
      pending.resolve(message);
    }
  }

  /** @param {ErrorMessage} message */
  #serverError(message) {
    const { code, message: text, details } = message.error;
    const pending = this.#takePending(message.requestId);
    if (pending) {
      pending.reject(new SensorStreamError(code, text, { requestId: message.requestId, details }));
    } else {
      this.#emitError(message.requestId ? { ...message.error, requestId: message.requestId } : message.error);
    }
    if (code === "unauthorized") {
      // The server no longer knows this connection (expired record): a new one re-registers,
      // or, if the token itself expired, ends in the `unauthorized` status.
      this.#transport.socket?.close(4001, "connection unknown to the server");
    }
  }

  /** @param {ReadingsBatchMessage} message */
  #acceptBatch(message) {
    /** @type {Reading[]} */
    const fresh = [];
    for (const batch of message.batches) {
      for (const reading of batch.readings) {
        if (this.#seenIds.has(reading.id)) continue;
        this.#remember(reading);
        // Right after a reconnect the server still sends the whole org until the
        // subscription is restored; the caller only wants its selection.
        if (this.#wants(reading)) fresh.push(reading);
      }
    }
    if (fresh.length > 0) {
      /** @type {ReadingsDetail} */
      const detail = { readings: fresh, replay: message.replay === true, serverTime: message.serverTime };
      this.dispatchEvent(new CustomEvent("readings", { detail }));
    }
  }

  /** @param {Reading} reading */
  #remember(reading) {
    this.#seenIds.add(reading.id);
    if (this.#seenIds.size > this.#options.maxRememberedIds) this.#seenIds.delete(first(this.#seenIds.values()));
    // The server replays readings that *arrived* after `since`: it is the arrival time (the
    // server's clock) that counts, whatever the device's clock said.
    const seenMs = Date.parse(reading.receivedAt);
    if (Number.isFinite(seenMs) && (this.#newestSeenMs === undefined || seenMs > this.#newestSeenMs)) {
      this.#newestSeenMs = seenMs;
    }
  }

  /** @param {Reading} reading */
  #wants(reading) {
    const selection = this.#subscription;
    if (!selection || selection.scope === "org") return true;
    return selection.unitIds.includes(reading.unitId) || (reading.siteId !== null && selection.siteIds.includes(reading.siteId));
  }

  // --- Events --------------------------------------------------------------------------------

  /** @param {Subscription} subscription */
  #setSubscription(subscription) {
    this.#subscription = subscription;
    this.dispatchEvent(new CustomEvent("subscription", { detail: subscription }));
  }

  /** @param {ErrorDetail} detail */
  #emitError(detail) {
    this.dispatchEvent(new CustomEvent("error", { detail }));
  }
}

// --- Helpers ---------------------------------------------------------------------------------

/**
 * @template T
 * @param {Iterator<T>} iterator
 * @returns {T}
 */
function first(iterator) {
  return iterator.next().value;
}
