// @ts-check
/**
 * The connection life cycle of `SensorStreamClient` (sensor-stream-client.js), kept apart from
 * its requests and subscriptions as socket.io keeps its Manager and Ably its ConnectionManager:
 * opening the WebSocket with the token, reconnecting with exponential backoff and full jitter
 * (at once when an unreachable server answers again), the browser's online and visibility
 * hints, heartbeats, and replacing the token before it expires. It knows no message: what a
 * connection says goes through the hooks the client gives it (`TransportHooks`).
 *
 * Internal to the package: applications use `SensorStreamClient`.
 */

/** @import { ClientOptions, ConnectionStatus, ErrorDetail, StatusDetail } from "./sensor-stream-client.js" */

export const SUBPROTOCOL = "sensor-stream.v1";
const BEARER_PREFIX = "bearer.";

/**
 * The client's options the life cycle runs on (see `ClientOptions`).
 * @typedef {Required<Pick<ClientOptions, "url" | "minRetryDelayMs" | "maxRetryDelayMs" | "probeIntervalMs"
 *   | "recoveryJitterMs" | "heartbeatIntervalMs" | "heartbeatTimeoutMs" | "requestTimeoutMs" | "maxRefusals"
 *   | "refreshAheadMs">>} TransportOptions
 */

/**
 * What the transport needs from the client.
 * @typedef {object} TransportHooks
 * @property {() => ClientOptions["token"]} token the `token` option as it is now (`setToken`)
 * @property {() => number} serverNow now on the server's clock (epoch ms)
 * @property {(socket: WebSocket, token: string) => void} opened the socket is open: say `hello`,
 *   then call `connected()`, or `abandon()` when that fails
 * @property {(data: unknown) => void} message a message arrived on the current socket
 * @property {(reason: string) => void} dropped the socket is gone or given up: fail what waited on it
 * @property {(detail: StatusDetail) => void} status the status changed
 * @property {(timeoutMs: number, sentAt: number) => Promise<string>} ping a `ping` round trip: the
 *   server's time, or a rejection (code `timeout` when no answer came within `timeoutMs`)
 * @property {() => Promise<unknown>} refresh extend the session with a fresh token (`refreshToken`)
 * @property {(detail: ErrorDetail) => void} error a step of staying connected failed
 */

export class Transport {
  /** @type {TransportOptions} */
  #options;
  /** @type {TransportHooks} */
  #hooks;
  /** @type {WebSocket | null} */
  #socket = null;
  /** @type {ConnectionStatus} */
  #status = "offline";
  #started = false;
  #failures = 0;
  #refusals = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #retryTimer;
  /** true while a retry waits for its timer (what `retryNow()` may cut short) */
  #retryPending = false;
  /** true while the server could not be reached: probes look for its return */
  #probing = false;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #refreshTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #heartbeatTimer;
  /** @type {Promise<string> | null} the ping in flight, shared by concurrent callers */
  #pingInFlight = null;
  /** `Date.now()` of the last message from the server */
  #lastMessageAt = 0;
  /** @type {AbortController | null} removes the window/document listeners on `close()` */
  #listeners = null;

  /**
   * @param {TransportOptions} options
   * @param {TransportHooks} hooks
   */
  constructor(options, hooks) {
    this.#options = options;
    this.#hooks = hooks;
  }

  /** @returns {ConnectionStatus} */
  get status() {
    return this.#status;
  }

  /** @returns {WebSocket | null} the current socket (or attempt) */
  get socket() {
    return this.#socket;
  }

  /** true from `start()` until `close()` or giving up */
  get started() {
    return this.#started;
  }

  /** Starts connecting (again, after `close()` or `unauthorized`); no-op while active. */
  start() {
    if (this.#started) return;
    this.#started = true;
    this.#failures = 0;
    this.#refusals = 0;
    this.#listen();
    this.#open();
  }

  /** Closes the connection and stops reconnecting. */
  close() {
    this.#stop();
    const socket = this.#socket;
    this.#drop("closed by the client");
    socket?.close(1000, "client closed");
    this.#setStatus({ status: "offline", reason: "closed" });
  }

  /** While not connected, tries again at once; an attempt still under way is replaced. */
  retryNow() {
    if (!this.#started || this.#status === "connected") return;
    const attempt = this.#socket;
    if (attempt?.readyState === WebSocket.CONNECTING) {
      // An attempt that hangs (a frozen server) is replaced by a fresh one.
      this.#drop("replaced by a new attempt");
      attempt.close();
    }
    if (!this.#socket) this.#open();
  }

  /** The server answered `hello`: the connection is up. */
  connected() {
    this.#failures = 0;
    this.#refusals = 0;
    this.#setStatus({ status: "connected" });
  }

  /** A message arrived: the server is alive and the connection works. */
  heard() {
    this.#lastMessageAt = Date.now();
    this.#armHeartbeat();
  }

  /**
   * Round trip to the server: resolves with its time. When neither the answer nor any other
   * message comes within `heartbeatTimeoutMs`, the connection is taken for dead: it is dropped
   * and replaced, and the promise rejects.
   * @returns {Promise<string>}
   */
  heartbeat() {
    if (!this.#pingInFlight) {
      this.#pingInFlight = this.#heartbeat().finally(() => {
        this.#pingInFlight = null;
      });
    }
    return this.#pingInFlight;
  }

  /**
   * With a token function, a fresh token replaces the current one a while before it expires;
   * should that fail, the server ends the session at expiry and the reconnect resumes.
   * Expiry is judged on the server's clock.
   * @param {string} token the token the session runs on
   */
  scheduleRefresh(token) {
    clearTimeout(this.#refreshTimer);
    const exp = decodeTokenClaims(token)?.exp;
    if (typeof this.#hooks.token() !== "function" || typeof exp !== "number") return;
    // setTimeout takes at most 2^31 - 1 ms (24.8 days): a longer delay would fire at once.
    const delay = Math.min(2 ** 31 - 1, Math.max(0, exp * 1000 - this.#hooks.serverNow() - this.#options.refreshAheadMs));
    this.#refreshTimer = setTimeout(() => {
      this.#hooks.refresh().catch((error) =>
        this.#hooks.error({ code: "refresh_failed", message: `could not refresh the token: ${describe(error)}` }),
      );
    }, delay);
  }

  /**
   * The connection (or attempt) gets no answer: drop it without waiting for a close
   * handshake that a frozen server will not complete, and connect again.
   * @param {string} reason
   */
  abandon(reason) {
    const socket = this.#socket;
    if (!socket) return;
    this.#drop(reason);
    socket.close(4002, "no answer");
    if (this.#started) {
      this.#scheduleRetry(reason);
      this.#probeForRecovery();
    }
  }

  // --- Connecting ------------------------------------------------------------------------------

  async #open() {
    clearTimeout(this.#retryTimer);
    this.#retryPending = false;
    if (!this.#started || this.#socket) return;
    if (globalThis.navigator?.onLine === false) {
      this.#setStatus({ status: "offline", reason: "the browser is offline" });
      return;
    }
    this.#setStatus({ status: this.#failures === 0 ? "connecting" : "reconnecting", attempt: this.#failures });

    const source = this.#hooks.token();
    let token;
    try {
      token = typeof source === "function" ? await source() : source;
    } catch (error) {
      this.#giveUp(`no token: ${describe(error)}`);
      return;
    }
    const problem = tokenProblem(token, this.#hooks.serverNow());
    if (problem) {
      this.#giveUp(problem);
      return;
    }
    if (!this.#started || this.#socket) return;

    // The token rides in the subprotocol list: browsers cannot set headers, and URLs get logged.
    const socket = new WebSocket(this.#options.url, [SUBPROTOCOL, BEARER_PREFIX + token]);
    this.#socket = socket;
    let opened = false;
    // A server that accepts the TCP connection but never answers (frozen, or a half-open
    // network path) would hold the attempt for minutes: give up on it like on a lost one.
    const connectTimer = setTimeout(() => {
      if (!opened && socket === this.#socket) {
        this.abandon(`the server did not answer the connection attempt within ${this.#options.requestTimeoutMs} ms`);
      }
    }, this.#options.requestTimeoutMs);
    socket.addEventListener("open", () => {
      opened = true;
      clearTimeout(connectTimer);
      if (socket === this.#socket) this.#hooks.opened(socket, token);
    });
    socket.addEventListener("message", (event) => {
      if (socket === this.#socket) this.#hooks.message(event.data);
    });
    socket.addEventListener("close", (event) => {
      if (socket === this.#socket) this.#handleClose(opened, event);
    });
  }

  /**
   * @param {boolean} opened
   * @param {CloseEvent} event
   */
  async #handleClose(opened, event) {
    this.#drop(`connection closed (${event.code}${event.reason ? `: ${event.reason}` : ""})`);
    if (!this.#started) return;
    if (opened) {
      this.#scheduleRetry("the connection was lost");
      return;
    }
    // A refused handshake (HTTP 401) and an unreachable server look alike to a page: the
    // browser hides the status code. A server that answers plain HTTP is up, so it refused us.
    const reachable = await isReachable(this.#options.url);
    if (!this.#started || this.#socket) return;
    if (reachable && ++this.#refusals >= this.#options.maxRefusals) {
      this.#giveUp("the server refused the connection: the token is invalid, expired or not for this API");
      return;
    }
    this.#scheduleRetry(reachable ? "the server refused the connection" : "the server could not be reached");
    if (!reachable) this.#probeForRecovery();
  }

  /** @param {string} reason */
  #scheduleRetry(reason) {
    // Full jitter (random delay up to an exponentially growing ceiling) spreads the reconnects
    // of many browsers after a server outage instead of synchronising them.
    const ceiling = Math.min(this.#options.maxRetryDelayMs, this.#options.minRetryDelayMs * 2 ** this.#failures);
    this.#failures += 1;
    this.#retryIn(Math.round(Math.random() * ceiling), reason);
  }

  /**
   * @param {number} delay
   * @param {string} reason
   */
  #retryIn(delay, reason) {
    clearTimeout(this.#retryTimer);
    this.#retryPending = true;
    this.#retryTimer = setTimeout(() => this.#open(), delay);
    this.#setStatus({ status: "reconnecting", reason, retryInMs: delay, retryAt: Date.now() + delay, attempt: this.#failures });
  }

  /**
   * While a retry waits and the server could not be reached, checks every `probeIntervalMs`
   * (plain HTTP: no connection, no Lambda) whether it answers again; if it does, the retry
   * starts within `recoveryJitterMs` instead of after the rest of the backoff.
   */
  async #probeForRecovery() {
    if (this.#probing) return;
    this.#probing = true;
    try {
      while (this.#started && this.#retryPending) {
        await sleep(this.#options.probeIntervalMs);
        if (!this.#started || !this.#retryPending) return;
        const timeoutMs = Math.max(1000, 2 * this.#options.probeIntervalMs);
        if (await isReachable(this.#options.url, timeoutMs)) {
          if (!this.#started || !this.#retryPending) return;
          this.#failures = 0;
          const delay = Math.round(Math.random() * this.#options.recoveryJitterMs);
          this.#retryIn(delay, "the server answers again");
          return;
        }
      }
    } finally {
      this.#probing = false;
    }
  }

  /**
   * Stops retrying: a token the server refuses will not get better by retrying.
   * @param {string} reason
   */
  #giveUp(reason) {
    this.#stop();
    this.#setStatus({ status: "unauthorized", reason });
  }

  /** No more attempts, timers or window/document listeners. */
  #stop() {
    this.#started = false;
    this.#retryPending = false;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#heartbeatTimer);
    clearTimeout(this.#refreshTimer);
    this.#listeners?.abort();
    this.#listeners = null;
  }

  /**
   * The browser's hints: back online or back in view means retry now (a background tab's timers
   * are slowed down) or check that the connection survived.
   */
  #listen() {
    this.#listeners?.abort();
    const controller = new AbortController();
    this.#listeners = controller;
    const { signal } = controller;
    const wakeUp = () => {
      if (!this.#started) return;
      if (this.#status === "connected") this.heartbeat().catch(() => {});
      else {
        this.#failures = 0;
        this.retryNow();
      }
    };
    globalThis.addEventListener?.("online", wakeUp, { signal });
    globalThis.addEventListener?.("offline", () => this.#status === "connected" && this.heartbeat().catch(() => {}), { signal });
    globalThis.document?.addEventListener(
      "visibilitychange",
      () => globalThis.document.visibilityState === "visible" && wakeUp(),
      { signal },
    );
  }

  /** @param {string} reason */
  #drop(reason) {
    clearTimeout(this.#refreshTimer);
    clearTimeout(this.#heartbeatTimer);
    this.#socket = null;
    this.#hooks.dropped(reason);
  }

  /** @param {StatusDetail} detail */
  #setStatus(detail) {
    this.#status = detail.status;
    this.#hooks.status(detail);
  }

  // --- Heartbeat -----------------------------------------------------------------------------

  async #heartbeat() {
    const socket = this.#socket;
    const sentAt = Date.now();
    try {
      return await this.#hooks.ping(this.#options.heartbeatTimeoutMs, sentAt);
    } catch (error) {
      // The client rejects with its SensorStreamError; `timeout`: no answer in time.
      const code = error instanceof Error ? /** @type {{ code?: unknown }} */ (error).code : undefined;
      if (code === "timeout" && socket === this.#socket && this.#lastMessageAt < sentAt) {
        this.abandon(`the server stopped answering (no answer to ping within ${this.#options.heartbeatTimeoutMs} ms)`);
      }
      throw error;
    }
  }

  /** Any message proves the connection alive; after `heartbeatIntervalMs` of silence, ask. */
  #armHeartbeat() {
    clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = setTimeout(() => {
      if (this.#status === "connected") this.heartbeat().catch(() => {});
    }, this.#options.heartbeatIntervalMs);
  }
}

// --- Helpers ---------------------------------------------------------------------------------

/**
 * The claims of a JWT, read without verifying it (only the server can): for display and for
 * not connecting with a token that is visibly expired.
 * @param {string} token
 * @returns {Record<string, unknown> | null}
 */
export function decodeTokenClaims(token) {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = new TextDecoder().decode(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
    const claims = JSON.parse(json);
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/**
 * @param {string} token
 * @param {number} now epoch ms on the server's clock (as far as the client knows it)
 * @returns {string | null} why the token cannot work, or null
 */
function tokenProblem(token, now) {
  if (!token) return "no token";
  const claims = decodeTokenClaims(token);
  if (!claims) return "the token is not a JWT";
  if (typeof claims.exp === "number" && claims.exp * 1000 <= now) return "the token has expired";
  return null;
}

/**
 * Whether anything answers HTTP at the WebSocket endpoint. An opaque (`no-cors`) answer is
 * enough: fetch rejects only when nothing answered at all.
 * @param {string} url
 * @param {number} [timeoutMs]
 */
async function isReachable(url, timeoutMs = 5000) {
  try {
    await fetch(url.replace(/^ws/, "http"), { mode: "no-cors", cache: "no-store", signal: AbortSignal.timeout(timeoutMs) });
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves after `ms` (for sensor-stream-client.js too).
 * @param {number} ms
 * @returns {Promise<void>}
 */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * An error's message, for status reasons and error details (for sensor-stream-client.js too).
 * @param {unknown} error
 */
export function describe(error) {
  return error instanceof Error ? error.message : String(error);
}
