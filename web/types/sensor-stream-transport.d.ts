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
import type { ClientOptions, ConnectionStatus, ErrorDetail, StatusDetail } from "./sensor-stream-client.js";
/** @import { ClientOptions, ConnectionStatus, ErrorDetail, StatusDetail } from "./sensor-stream-client.js" */
export declare const SUBPROTOCOL = "sensor-stream.v1";
export type TransportOptions = Required<Pick<ClientOptions, "url" | "minRetryDelayMs" | "maxRetryDelayMs" | "probeIntervalMs" | "recoveryJitterMs" | "heartbeatIntervalMs" | "heartbeatTimeoutMs" | "requestTimeoutMs" | "maxRefusals" | "refreshAheadMs">>;
export type TransportHooks = {
    /**
     * the `token` option as it is now (`setToken`)
     */
    token: () => ClientOptions["token"];
    /**
     * now on the server's clock (epoch ms)
     */
    serverNow: () => number;
    /**
     * the socket is open: say `hello`,
     * then call `connected()`, or `abandon()` when that fails
     */
    opened: (socket: WebSocket, token: string) => void;
    /**
     * a message arrived on the current socket
     */
    message: (data: unknown) => void;
    /**
     * the socket is gone or given up: fail what waited on it
     */
    dropped: (reason: string) => void;
    /**
     * the status changed
     */
    status: (detail: StatusDetail) => void;
    /**
     * a `ping` round trip: the
     * server's time, or a rejection (code `timeout` when no answer came within `timeoutMs`)
     */
    ping: (timeoutMs: number, sentAt: number) => Promise<string>;
    /**
     * extend the session with a fresh token (`refreshToken`)
     */
    refresh: () => Promise<unknown>;
    /**
     * a step of staying connected failed
     */
    error: (detail: ErrorDetail) => void;
};
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
export declare class Transport {
    #private;
    /**
     * @param {TransportOptions} options
     * @param {TransportHooks} hooks
     */
    constructor(options: TransportOptions, hooks: TransportHooks);
    /** @returns {ConnectionStatus} */
    get status(): ConnectionStatus;
    /** @returns {WebSocket | null} the current socket (or attempt) */
    get socket(): WebSocket | null;
    /** true from `start()` until `close()` or giving up */
    get started(): boolean;
    /** Starts connecting (again, after `close()` or `unauthorized`); no-op while active. */
    start(): void;
    /** Closes the connection and stops reconnecting. */
    close(): void;
    /** While not connected, tries again at once; an attempt still under way is replaced. */
    retryNow(): void;
    /** The server answered `hello`: the connection is up. */
    connected(): void;
    /** A message arrived: the server is alive and the connection works. */
    heard(): void;
    /**
     * Round trip to the server: resolves with its time. When neither the answer nor any other
     * message comes within `heartbeatTimeoutMs`, the connection is taken for dead: it is dropped
     * and replaced, and the promise rejects.
     * @returns {Promise<string>}
     */
    heartbeat(): Promise<string>;
    /**
     * With a token function, a fresh token replaces the current one a while before it expires;
     * should that fail, the server ends the session at expiry and the reconnect resumes.
     * Expiry is judged on the server's clock.
     * @param {string} token the token the session runs on
     */
    scheduleRefresh(token: string): void;
    /**
     * The connection (or attempt) gets no answer: drop it without waiting for a close
     * handshake that a frozen server will not complete, and connect again.
     * @param {string} reason
     */
    abandon(reason: string): void;
}
/**
 * The claims of a JWT, read without verifying it (only the server can): for display and for
 * not connecting with a token that is visibly expired.
 * @param {string} token
 * @returns {Record<string, unknown> | null}
 */
export declare function decodeTokenClaims(token: string): Record<string, unknown> | null;
/**
 * Resolves after `ms` (for sensor-stream-client.js too).
 * @param {number} ms
 * @returns {Promise<void>}
 */
export declare function sleep(ms: number): Promise<void>;
/**
 * An error's message, for status reasons and error details (for sensor-stream-client.js too).
 * @param {unknown} error
 */
export declare function describe(error: unknown): string;
