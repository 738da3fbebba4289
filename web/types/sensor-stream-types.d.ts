/**
 * The contract's messages and records as JSDoc typedefs (docs/contract.md: section 3, the
 * WebSocket API; section 5, the alert rules over the HTTP API): what a browser sends and
 * receives. No code: sensor-stream-client.js re-exports every type here, so an application
 * imports them from the package as before (`import type { Reading } from "@sensor-stream/client"`).
 *
 * The typedefs mirror the pydantic models of functions/sensor_stream/models.py (the single
 * source of truth); tests/unit/test_web_contract.py keeps them in step.
 */
export type Reading = {
    id: string;
    unitId: string;
    siteId: string | null;
    deviceId: string;
    /**
     * degrees Celsius
     */
    temperature: number;
    /**
     * percent
     */
    humidity: number | null;
    /**
     * percent
     */
    battery: number | null;
    /**
     * dBm
     */
    signalStrength: number | null;
    /**
     * when the device measured it
     */
    recordedAt: string;
    /**
     * when the cloud received it
     */
    receivedAt: string;
    source: "iot" | "http";
};
export type Subscription = {
    scope: "org" | "selected";
    unitIds: string[];
    siteIds: string[];
};
export type Resume = {
    since: string;
};
export type UnitBatch = {
    unitId: string;
    /**
     * ordered by `recordedAt`
     */
    readings: Reading[];
    count: number;
};
export type ErrorBody = {
    code: ServerErrorCode;
    message: string;
    details?: Array<Record<string, unknown>>;
};
export type ServerErrorCode = "malformed_json" | "unknown_action" | "validation_error" | "limit_exceeded" | "throttled" | "unauthorized" | "token_expired" | "forbidden" | "not_found" | "conflict" | "unavailable" | "bad_request" | "payload_too_large";
export type HelloRequest = {
    action: "hello";
    requestId?: string;
    resume?: Resume;
};
export type SubscribeRequest = {
    action: "subscribe";
    requestId?: string;
    unitIds?: string[];
    siteIds?: string[];
    scope?: "org";
};
export type UnsubscribeRequest = {
    action: "unsubscribe";
    requestId?: string;
    unitIds?: string[];
    siteIds?: string[];
};
export type GetLatestRequest = {
    action: "getLatest";
    requestId?: string;
    unitId: string;
};
export type GetHistoryRequest = {
    action: "getHistory";
    requestId?: string;
    unitId: string;
    since?: string;
    until?: string;
    /**
     * at most 300 (the default)
     */
    limit?: number;
};
export type GetAlertsRequest = {
    action: "getAlerts";
    requestId?: string;
};
export type ListUnitsRequest = {
    action: "listUnits";
    requestId?: string;
};
export type PingRequest = {
    action: "ping";
    requestId?: string;
};
export type SendCommandRequest = {
    action: "sendCommand";
    requestId?: string;
    deviceId: string;
    command: string;
    params?: Record<string, unknown>;
};
export type RefreshTokenRequest = {
    action: "refreshToken";
    requestId?: string;
    token: string;
};
export type ClientRequest = HelloRequest | SubscribeRequest | UnsubscribeRequest | GetLatestRequest | GetHistoryRequest | GetAlertsRequest | ListUnitsRequest | PingRequest | RefreshTokenRequest | SendCommandRequest;
export type ConnectionMessage = {
    type: "connection";
    requestId?: string;
    status: "connected";
    connectionId: string;
    serverTime: string;
    subscription: Subscription;
};
export type SubscribedMessage = {
    type: "subscribed";
    requestId?: string;
    subscription: Subscription;
};
export type LatestMessage = {
    type: "latest";
    requestId?: string;
    unitId: string;
    reading: Reading | null;
};
export type HistoryMessage = {
    type: "history";
    requestId?: string;
    unitId: string;
    /**
     * ordered by `recordedAt`
     */
    readings: Reading[];
    /**
     * the span held more than `limit`: ask again with an earlier `until`
     */
    more: boolean;
    /**
     * an answer too large for one message comes in parts: this one's number (1..parts)
     */
    part?: number;
    /**
     * how many parts the answer has (the client joins them)
     */
    parts?: number;
};
export type AlertTriggeredMessage = {
    type: "alert:triggered";
    alertId: string;
    ruleId: string;
    unitId: string;
    alertType: "temperature_high" | "temperature_low" | "humidity_high" | "humidity_low" | "battery_high" | "battery_low" | "signalStrength_high" | "signalStrength_low" | "silence";
    severity: "info" | "warning" | "critical";
    message: string;
    /**
     * the reading's value that broke the rule (not for silence)
     */
    value?: number;
    /**
     * the rule's bound it broke
     */
    threshold?: number;
    triggeredAt: string;
};
export type AlertResolvedMessage = {
    type: "alert:resolved";
    alertId: string;
    ruleId: string;
    unitId: string;
    resolvedAt: string;
};
export type AlertsMessage = {
    type: "alerts";
    requestId?: string;
    active: AlertTriggeredMessage[];
    /**
     * an answer too large for one message comes in parts: this one's number (1..parts)
     */
    part?: number;
    /**
     * how many parts the answer has (the client joins them)
     */
    parts?: number;
};
export type UnitInfo = {
    unitId: string;
    siteId: string | null;
    lastReading: Reading | null;
    /**
     * its last `receivedAt`
     */
    lastSeenAt: string | null;
};
export type UnitsMessage = {
    type: "units";
    requestId?: string;
    units: UnitInfo[];
    /**
     * an answer too large for one message comes in parts: this one's number (1..parts)
     */
    part?: number;
    /**
     * how many parts the answer has (the client joins them)
     */
    parts?: number;
};
export type PongMessage = {
    type: "pong";
    requestId?: string;
    serverTime: string;
};
export type TokenRefreshedMessage = {
    type: "tokenRefreshed";
    requestId?: string;
    expiresAt: string;
};
export type ReadingsBatchMessage = {
    type: "sensor:readings:batch";
    serverTime: string;
    /**
     * true for readings replayed after `hello` with `resume`
     */
    replay?: boolean;
    batches: UnitBatch[];
};
export type CommandAcceptedMessage = {
    type: "command:accepted";
    requestId?: string;
    commandId: string;
};
export type CommandAckMessage = {
    type: "command:ack";
    requestId?: string;
    commandId: string;
    status: "ok" | "error";
    detail?: string;
};
export type CommandTimeoutMessage = {
    type: "command:timeout";
    requestId?: string;
    commandId: string;
};
export type ErrorMessage = {
    type: "error";
    requestId?: string;
    error: ErrorBody;
};
export type ServerMessage = ConnectionMessage | SubscribedMessage | LatestMessage | HistoryMessage | PongMessage | TokenRefreshedMessage | ReadingsBatchMessage | CommandAcceptedMessage | CommandAckMessage | CommandTimeoutMessage | AlertTriggeredMessage | AlertResolvedMessage | AlertsMessage | UnitsMessage | ErrorMessage;
export type AlertRule = {
    /**
     * 1-64 chars of `[A-Za-z0-9_.:-]`, unique within the org
     */
    ruleId: string;
    metric: "temperature" | "humidity" | "battery" | "signalStrength" | "silence";
    /**
     * alert below this (not for silence)
     */
    min?: number;
    /**
     * alert above this (not for silence)
     */
    max?: number;
    /**
     * silence rules: alert after this long without a reading (10-86400)
     */
    maxSilenceSeconds?: number;
    unitId?: string;
    siteId?: string;
    /**
     * how long the condition must hold before the alert opens
     */
    forSeconds: number;
    severity: "info" | "warning" | "critical";
    name?: string;
};
export type AlertRuleBody = {
    metric: "temperature" | "humidity" | "battery" | "signalStrength" | "silence";
    min?: number;
    max?: number;
    maxSilenceSeconds?: number;
    unitId?: string;
    siteId?: string;
    forSeconds?: number;
    severity: "info" | "warning" | "critical";
    name?: string;
};
/**
 * A stored reading, as every client receives it. Times are ISO-8601 UTC with a `Z`.
 * @typedef {object} Reading
 * @property {string} id
 * @property {string} unitId
 * @property {string | null} siteId
 * @property {string} deviceId
 * @property {number} temperature degrees Celsius
 * @property {number | null} humidity percent
 * @property {number | null} battery percent
 * @property {number | null} signalStrength dBm
 * @property {string} recordedAt when the device measured it
 * @property {string} receivedAt when the cloud received it
 * @property {"iot" | "http"} source
 */
/**
 * What a connection receives: the whole org (`scope: "org"`) or selected units/sites.
 * @typedef {object} Subscription
 * @property {"org" | "selected"} scope
 * @property {string[]} unitIds
 * @property {string[]} siteIds
 */
/**
 * @typedef {object} Resume
 * @property {string} since
 */
/**
 * @typedef {object} UnitBatch
 * @property {string} unitId
 * @property {Reading[]} readings ordered by `recordedAt`
 * @property {number} count
 */
/**
 * @typedef {object} ErrorBody
 * @property {ServerErrorCode} code
 * @property {string} message
 * @property {Array<Record<string, unknown>>} [details]
 */
/**
 * The codes a server error carries (docs/contract.md, "Error codes"). `token_expired` comes
 * before the server ends a session; `bad_request` and `payload_too_large` are HTTP-only.
 * @typedef {"malformed_json" | "unknown_action" | "validation_error" | "limit_exceeded" | "throttled"
 *   | "unauthorized" | "token_expired" | "forbidden" | "not_found" | "conflict" | "unavailable"
 *   | "bad_request" | "payload_too_large"} ServerErrorCode
 */
/**
 * @typedef {object} HelloRequest
 * @property {"hello"} action
 * @property {string} [requestId]
 * @property {Resume} [resume]
 */
/**
 * @typedef {object} SubscribeRequest
 * @property {"subscribe"} action
 * @property {string} [requestId]
 * @property {string[]} [unitIds]
 * @property {string[]} [siteIds]
 * @property {"org"} [scope]
 */
/**
 * @typedef {object} UnsubscribeRequest
 * @property {"unsubscribe"} action
 * @property {string} [requestId]
 * @property {string[]} [unitIds]
 * @property {string[]} [siteIds]
 */
/**
 * @typedef {object} GetLatestRequest
 * @property {"getLatest"} action
 * @property {string} [requestId]
 * @property {string} unitId
 */
/**
 * A unit's readings recorded in a span (default: the last hour), newest last.
 * @typedef {object} GetHistoryRequest
 * @property {"getHistory"} action
 * @property {string} [requestId]
 * @property {string} unitId
 * @property {string} [since]
 * @property {string} [until]
 * @property {number} [limit] at most 300 (the default)
 */
/**
 * @typedef {object} GetAlertsRequest
 * @property {"getAlerts"} action
 * @property {string} [requestId]
 */
/**
 * @typedef {object} ListUnitsRequest
 * @property {"listUnits"} action
 * @property {string} [requestId]
 */
/**
 * A heartbeat: keeps the connection from idling out and tells the client it is alive.
 * @typedef {object} PingRequest
 * @property {"ping"} action
 * @property {string} [requestId]
 */
/**
 * @typedef {object} SendCommandRequest
 * @property {"sendCommand"} action
 * @property {string} [requestId]
 * @property {string} deviceId
 * @property {string} command
 * @property {Record<string, unknown>} [params]
 */
/**
 * A fresh token for the same user and org, sent before the current one expires.
 * @typedef {object} RefreshTokenRequest
 * @property {"refreshToken"} action
 * @property {string} [requestId]
 * @property {string} token
 */
/**
 * @typedef {HelloRequest | SubscribeRequest | UnsubscribeRequest | GetLatestRequest | GetHistoryRequest
 *   | GetAlertsRequest | ListUnitsRequest | PingRequest | RefreshTokenRequest | SendCommandRequest} ClientRequest
 */
/**
 * @typedef {object} ConnectionMessage
 * @property {"connection"} type
 * @property {string} [requestId]
 * @property {"connected"} status
 * @property {string} connectionId
 * @property {string} serverTime
 * @property {Subscription} subscription
 */
/**
 * @typedef {object} SubscribedMessage
 * @property {"subscribed"} type
 * @property {string} [requestId]
 * @property {Subscription} subscription
 */
/**
 * @typedef {object} LatestMessage
 * @property {"latest"} type
 * @property {string} [requestId]
 * @property {string} unitId
 * @property {Reading | null} reading
 */
/**
 * @typedef {object} HistoryMessage
 * @property {"history"} type
 * @property {string} [requestId]
 * @property {string} unitId
 * @property {Reading[]} readings ordered by `recordedAt`
 * @property {boolean} more the span held more than `limit`: ask again with an earlier `until`
 * @property {number} [part] an answer too large for one message comes in parts: this one's number (1..parts)
 * @property {number} [parts] how many parts the answer has (the client joins them)
 */
/**
 * An alert that opened (contract section 5).
 * @typedef {object} AlertTriggeredMessage
 * @property {"alert:triggered"} type
 * @property {string} alertId
 * @property {string} ruleId
 * @property {string} unitId
 * @property {"temperature_high" | "temperature_low" | "humidity_high" | "humidity_low" | "battery_high"
 *   | "battery_low" | "signalStrength_high" | "signalStrength_low" | "silence"} alertType
 * @property {"info" | "warning" | "critical"} severity
 * @property {string} message
 * @property {number} [value] the reading's value that broke the rule (not for silence)
 * @property {number} [threshold] the rule's bound it broke
 * @property {string} triggeredAt
 */
/**
 * @typedef {object} AlertResolvedMessage
 * @property {"alert:resolved"} type
 * @property {string} alertId
 * @property {string} ruleId
 * @property {string} unitId
 * @property {string} resolvedAt
 */
/**
 * @typedef {object} AlertsMessage
 * @property {"alerts"} type
 * @property {string} [requestId]
 * @property {AlertTriggeredMessage[]} active
 * @property {number} [part] an answer too large for one message comes in parts: this one's number (1..parts)
 * @property {number} [parts] how many parts the answer has (the client joins them)
 */
/**
 * A unit of the org that has reported.
 * @typedef {object} UnitInfo
 * @property {string} unitId
 * @property {string | null} siteId
 * @property {Reading | null} lastReading
 * @property {string | null} lastSeenAt its last `receivedAt`
 */
/**
 * @typedef {object} UnitsMessage
 * @property {"units"} type
 * @property {string} [requestId]
 * @property {UnitInfo[]} units
 * @property {number} [part] an answer too large for one message comes in parts: this one's number (1..parts)
 * @property {number} [parts] how many parts the answer has (the client joins them)
 */
/**
 * @typedef {object} PongMessage
 * @property {"pong"} type
 * @property {string} [requestId]
 * @property {string} serverTime
 */
/**
 * @typedef {object} TokenRefreshedMessage
 * @property {"tokenRefreshed"} type
 * @property {string} [requestId]
 * @property {string} expiresAt
 */
/**
 * @typedef {object} ReadingsBatchMessage
 * @property {"sensor:readings:batch"} type
 * @property {string} serverTime
 * @property {boolean} [replay] true for readings replayed after `hello` with `resume`
 * @property {UnitBatch[]} batches
 */
/**
 * @typedef {object} CommandAcceptedMessage
 * @property {"command:accepted"} type
 * @property {string} [requestId]
 * @property {string} commandId
 */
/**
 * @typedef {object} CommandAckMessage
 * @property {"command:ack"} type
 * @property {string} [requestId]
 * @property {string} commandId
 * @property {"ok" | "error"} status
 * @property {string} [detail]
 */
/**
 * @typedef {object} CommandTimeoutMessage
 * @property {"command:timeout"} type
 * @property {string} [requestId]
 * @property {string} commandId
 */
/**
 * @typedef {object} ErrorMessage
 * @property {"error"} type
 * @property {string} [requestId]
 * @property {ErrorBody} error
 */
/**
 * @typedef {ConnectionMessage | SubscribedMessage | LatestMessage | HistoryMessage | PongMessage
 *   | TokenRefreshedMessage | ReadingsBatchMessage | CommandAcceptedMessage | CommandAckMessage
 *   | CommandTimeoutMessage | AlertTriggeredMessage | AlertResolvedMessage | AlertsMessage | UnitsMessage
 *   | ErrorMessage} ServerMessage
 */
/**
 * An alert rule as the HTTP API stores and answers it: a min/max rule on a metric, or a silence
 * rule, for one unit (`unitId`), one site (`siteId`) or (neither) every unit of the org.
 * @typedef {object} AlertRule
 * @property {string} ruleId 1-64 chars of `[A-Za-z0-9_.:-]`, unique within the org
 * @property {"temperature" | "humidity" | "battery" | "signalStrength" | "silence"} metric
 * @property {number} [min] alert below this (not for silence)
 * @property {number} [max] alert above this (not for silence)
 * @property {number} [maxSilenceSeconds] silence rules: alert after this long without a reading (10-86400)
 * @property {string} [unitId]
 * @property {string} [siteId]
 * @property {number} forSeconds how long the condition must hold before the alert opens
 * @property {"info" | "warning" | "critical"} severity
 * @property {string} [name]
 */
/**
 * The body of `PUT /alert-rules/{ruleId}`: a rule without its id (`forSeconds` defaults to 0).
 * @typedef {object} AlertRuleBody
 * @property {"temperature" | "humidity" | "battery" | "signalStrength" | "silence"} metric
 * @property {number} [min]
 * @property {number} [max]
 * @property {number} [maxSilenceSeconds]
 * @property {string} [unitId]
 * @property {string} [siteId]
 * @property {number} [forSeconds]
 * @property {"info" | "warning" | "critical"} severity
 * @property {string} [name]
 */
export {};
