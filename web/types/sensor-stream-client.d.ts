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
export * from "./sensor-stream-types.js";
export { SUBPROTOCOL, decodeTokenClaims } from "./sensor-stream-transport.js";
import type { AlertResolvedMessage, AlertRule, AlertRuleBody, AlertTriggeredMessage, CommandAckMessage, ErrorBody, Reading, ServerErrorCode, Subscription, UnitInfo } from "./sensor-stream-types.js";
export type ClientErrorCode = "timeout" | "not_connected" | "disconnected" | "command_failed" | "command_timeout" | "malformed_message" | "hello_failed" | "resubscribe_failed" | "refresh_failed";
export type ErrorCode = ServerErrorCode | ClientErrorCode;
export type AlertRulesOptions = {
    /**
     * the HTTP API's base URL (`httpUrl` in the dashboard's config.json)
     */
    httpUrl: string;
    /**
     * the JWT (the WebSocket's), or a
     * function asked before every request
     */
    token: string | (() => string | Promise<string>);
    /**
     * how long a request may take (default 10000)
     */
    timeoutMs?: number;
};
export type ConnectionStatus = "connecting" | "connected" | "reconnecting" | "offline" | "unauthorized";
export type StatusDetail = {
    status: ConnectionStatus;
    /**
     * human-readable cause of a non-connected status
     */
    reason?: string;
    /**
     * delay before the next attempt (`reconnecting`)
     */
    retryInMs?: number;
    /**
     * when the next attempt starts (`reconnecting`; `Date.now()` clock),
     * for a countdown; `retryNow()` starts it at once
     */
    retryAt?: number;
    /**
     * consecutive failed attempts so far
     */
    attempt?: number;
};
export type ReadingsDetail = {
    readings: Reading[];
    /**
     * true when they were replayed after `hello` with `resume`
     */
    replay: boolean;
    serverTime: string;
};
export type ErrorDetail = {
    code: ErrorCode;
    message: string;
    details?: Array<Record<string, unknown>>;
    requestId?: string;
};
export type SensorStreamEventMap = {
    /**
     * the connection status changed
     */
    status: CustomEvent<StatusDetail>;
    /**
     * new readings arrived
     */
    readings: CustomEvent<ReadingsDetail>;
    /**
     * an alert opened or resolved
     */
    alert: CustomEvent<AlertTriggeredMessage | AlertResolvedMessage>;
    /**
     * the server confirmed a subscription
     */
    subscription: CustomEvent<Subscription>;
    /**
     * a server error no request claimed, or a local failure
     */
    error: CustomEvent<ErrorDetail>;
};
export type ClientOptions = {
    /**
     * WebSocket endpoint, e.g. `wss://abc.execute-api.eu-west-1.amazonaws.com/prod`
     */
    url: string;
    /**
     * JWT, or a function called before every
     * connection attempt and before the current token expires (the session is then extended with
     * `refreshToken`; with a fixed token the server ends the session at the token's expiry)
     */
    token: string | (() => string | Promise<string>);
    /**
     * how long before its expiry a token is replaced (default 60000)
     */
    refreshAheadMs?: number;
    /**
     * backoff base (default 1000)
     */
    minRetryDelayMs?: number;
    /**
     * backoff cap (default 30000)
     */
    maxRetryDelayMs?: number;
    /**
     * while the server cannot be reached, how often to check
     * (plain HTTP, no connection) whether it is back; it is then retried within `recoveryJitterMs`
     * (default 1000)
     */
    probeIntervalMs?: number;
    /**
     * the most a retry waits once the server is back, spreading
     * the reconnects of many browsers (default 500)
     */
    recoveryJitterMs?: number;
    /**
     * after this long without a message the client sends `ping`
     * (default 25000; API Gateway closes connections idle for 10 minutes)
     */
    heartbeatIntervalMs?: number;
    /**
     * a `ping` with no message at all in answer within this long
     * means the connection is dead: it is dropped and replaced (default 6000)
     */
    heartbeatTimeoutMs?: number;
    /**
     * how long a request waits for its answer (default 10000)
     */
    requestTimeoutMs?: number;
    /**
     * how long `sendCommand` waits for the ack (default 15000:
     * the server gives up after 10 s and then sends `command:timeout`)
     */
    commandTimeoutMs?: number;
    /**
     * requests sent per `requestWindowMs` at most; more wait
     * for their turn instead of being `throttled` by the server (100 per 10 s; default 90, which
     * leaves room for `hello` and heartbeats)
     */
    maxRequestsPerWindow?: number;
    /**
     * see `maxRequestsPerWindow` (default 10000)
     */
    requestWindowMs?: number;
    /**
     * reading ids kept for de-duplication (default 5000)
     */
    maxRememberedIds?: number;
    /**
     * refused handshakes in a row that mean `unauthorized` (default 2)
     */
    maxRefusals?: number;
    /**
     * a resume starts this long before the newest reading seen, so
     * readings that arrived out of order are not missed; the repeats are de-duplicated (default 5000)
     */
    resumeOverlapMs?: number;
    /**
     * the first `hello` asks for the readings that arrived this
     * long before (the server replays at most 15 minutes and 1,000 readings); 0 for none (default 0)
     */
    initialResumeMs?: number;
    /**
     * first estimate of the server's clock minus this browser's, until
     * the server's own `serverTime` corrects it (default 0)
     */
    clockOffsetMs?: number;
};
export type CommandOptions = {
    /**
     * overrides `commandTimeoutMs`
     */
    timeoutMs?: number;
    /**
     * called when the server accepted the command
     */
    onAccepted?: (commandId: string) => void;
};
/**
 * @import { AlertResolvedMessage, AlertRule, AlertRuleBody, AlertsMessage, AlertTriggeredMessage,
 *   ClientRequest, CommandAcceptedMessage, CommandAckMessage, CommandTimeoutMessage, ConnectionMessage,
 *   ErrorBody, ErrorMessage, HelloRequest, HistoryMessage, LatestMessage, PongMessage, Reading,
 *   ReadingsBatchMessage, ServerErrorCode, ServerMessage, SubscribedMessage, Subscription,
 *   TokenRefreshedMessage, UnitInfo, UnitsMessage } from "./sensor-stream-types.js"
 */
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
export declare class SensorStreamError extends Error {
    /** @type {ErrorCode} */
    code: ErrorCode;
    /** @type {string | undefined} */
    requestId: string | undefined;
    /** @type {string | undefined} */
    commandId: string | undefined;
    /** @type {ErrorBody["details"] | undefined} */
    details: ErrorBody["details"] | undefined;
    /** @type {number | undefined} */
    status: number | undefined;
    /**
     * @param {ErrorCode} code
     * @param {string} message
     * @param {{ requestId?: string, commandId?: string, details?: ErrorBody["details"], status?: number }} [extra]
     */
    constructor(code: ErrorCode, message: string, extra?: {
        requestId?: string;
        commandId?: string;
        details?: ErrorBody["details"];
        status?: number;
    });
}
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
export declare class AlertRulesClient {
    #private;
    /** @param {AlertRulesOptions} options */
    constructor(options: AlertRulesOptions);
    /** @returns {Promise<AlertRule[]>} the rules the token may see */
    list(): Promise<AlertRule[]>;
    /**
     * Creates the rule, or replaces the one with this id.
     * @param {string} ruleId
     * @param {AlertRuleBody} rule
     * @returns {Promise<AlertRule>} the stored rule
     */
    put(ruleId: string, rule: AlertRuleBody): Promise<AlertRule>;
    /**
     * Deletes the rule; its open alerts resolve. A rule that is not there rejects with `not_found`.
     * @param {string} ruleId
     * @returns {Promise<void>}
     */
    delete(ruleId: string): Promise<void>;
}
/**
 * Whether a rule covers a unit, as the server decides: its `unitId`, else its `siteId`, else
 * every unit of the org.
 * @param {AlertRule | AlertRuleBody} rule
 * @param {string} unitId
 * @param {string | null} siteId
 */
export declare function ruleAppliesTo(rule: AlertRule | AlertRuleBody, unitId: string, siteId: string | null): boolean;
export type PendingRequest = {
    /**
     * the answer's `type`
     */
    expects: string;
    resolve: (message: any) => void;
    reject: (error: SensorStreamError) => void;
    timer: ReturnType<typeof setTimeout>;
    /**
     * for `sendCommand`, once accepted
     */
    commandId?: string;
    onAccepted?: (commandId: string) => void;
};
export type RequestOptions = {
    timeoutMs?: number;
    onAccepted?: (commandId: string) => void;
    /**
     * true for `hello`, which is what makes the status `connected`
     */
    beforeConnected?: boolean;
    /**
     * not counted against `maxRequestsPerWindow` (hello, heartbeats)
     */
    unmetered?: boolean;
};
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
export declare class SensorStreamClient extends EventTarget {
    #private;
    /** @param {ClientOptions} options */
    constructor(options: ClientOptions);
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
    addEventListener<K extends keyof SensorStreamEventMap>(type: K, listener: (this: SensorStreamClient, event: SensorStreamEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
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
    addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
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
    removeEventListener<K extends keyof SensorStreamEventMap>(type: K, listener: (this: SensorStreamClient, event: SensorStreamEventMap[K]) => void, options?: boolean | EventListenerOptions): void;
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
    removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
    /** @returns {ConnectionStatus} */
    get status(): ConnectionStatus;
    /** The server's id of the current connection, or null. */
    get connectionId(): string | null;
    /** @returns {Subscription | null} the subscription last confirmed by the server */
    get subscription(): Subscription | null;
    /**
     * The server's clock minus this browser's (ms), from the `serverTime` of `hello` and `ping`
     * answers (half the round trip taken off); the `clockOffsetMs` option until then.
     * @returns {number}
     */
    get clockOffsetMs(): number;
    /**
     * When the server last sent anything (epoch ms on the server's clock), over this connection or
     * the ones before it; undefined before the first message. Lags behind `serverNow()` while the
     * connection is quiet, lost or frozen: data is known current up to this time.
     * @returns {number | undefined}
     */
    get lastContactAt(): number | undefined;
    /** @returns {number} now on the server's clock (epoch ms): for ages, staleness and token expiry */
    serverNow(): number;
    /** @param {ClientOptions["token"]} token used from the next connection attempt on */
    setToken(token: ClientOptions["token"]): void;
    /** Starts connecting (again, after `close()` or `unauthorized`); no-op while active. */
    connect(): void;
    /**
     * Closes the connection and stops reconnecting; pending requests fail with `disconnected`, and
     * the listeners on `window`/`document` are removed.
     */
    close(): void;
    /**
     * While not connected (`reconnecting`, or `offline` because the browser said so), tries again
     * at once instead of waiting for the scheduled retry; an attempt still under way is replaced.
     * Does nothing when connected or after `close()`.
     */
    retryNow(): void;
    /**
     * Receive readings of these units/sites, or of the whole org with `{ scope: "org" }`.
     * While subscribed to the whole org, ids narrow the subscription to exactly them; on a
     * selection they are added to it.
     * @param {{ unitIds?: string[], siteIds?: string[], scope?: "org" }} selection
     * @returns {Promise<Subscription>}
     */
    subscribe(selection: {
        unitIds?: string[];
        siteIds?: string[];
        scope?: "org";
    }): Promise<Subscription>;
    /**
     * Stop receiving readings of these units/sites (of a selection); without ids, of everything.
     * @param {{ unitIds?: string[], siteIds?: string[] }} selection
     * @returns {Promise<Subscription>}
     */
    unsubscribe(selection: {
        unitIds?: string[];
        siteIds?: string[];
    }): Promise<Subscription>;
    /**
     * @param {string} unitId
     * @returns {Promise<Reading | null>} the unit's newest reading, null if it has none
     */
    getLatest(unitId: string): Promise<Reading | null>;
    /**
     * A unit's readings recorded in a span, oldest first: by default the last hour, at most 300.
     * @param {string} unitId
     * @param {{ since?: string, until?: string, limit?: number }} [span] ISO-8601 times
     * @returns {Promise<{ readings: Reading[], more: boolean }>} `more`: the span held more (the
     *   newest were sent); ask again with `until` set to the oldest one's `recordedAt`
     */
    getHistory(unitId: string, span?: {
        since?: string;
        until?: string;
        limit?: number;
    }): Promise<{
        readings: Reading[];
        more: boolean;
    }>;
    /**
     * The org's open alerts on the units the token allows.
     * @returns {Promise<AlertTriggeredMessage[]>}
     */
    getAlerts(): Promise<AlertTriggeredMessage[]>;
    /**
     * Every unit of the org that has reported (within the token's scope), quiet ones too.
     * @returns {Promise<UnitInfo[]>}
     */
    listUnits(): Promise<UnitInfo[]>;
    /**
     * Round trip to the server: resolves with its time (ISO-8601). When neither the answer nor any
     * other message comes within `heartbeatTimeoutMs`, the connection is taken for dead: it is
     * dropped and replaced, and the promise rejects (`timeout` or `disconnected`).
     * @returns {Promise<string>}
     */
    ping(): Promise<string>;
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
    sendCommand(deviceId: string, command: string, params?: Record<string, unknown>, options?: CommandOptions): Promise<CommandAckMessage>;
    /**
     * Extends the session with a fresh token (same user and org) before the current one expires;
     * done automatically when the `token` option is a function.
     * @param {string} [token] defaults to the `token` option (called again when it is a function)
     * @returns {Promise<string>} the session's new expiry (ISO-8601)
     */
    refreshToken(token?: string): Promise<string>;
}
