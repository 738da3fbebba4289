// @ts-check
/**
 * The live dashboard: one row per unit of the org with its newest reading, a temperature
 * sparkline of the last 5 minutes, its state, its active alerts and the device's commands; the
 * active alerts in the header; a page-level banner whenever the connection is not healthy; a
 * dialog per unit with its history and its alert rules. Everything it knows comes through
 * SensorStreamClient (WebSocket) and AlertRulesClient (HTTP API).
 */
import { AlertRulesClient, SensorStreamClient, decodeTokenClaims, ruleAppliesTo } from "./sensor-stream-client.js";
import { CognitoAuth } from "./auth.js";
import { HistoryChart, formatSpan, gapThresholdMs, sparkline } from "./charts.js";
import { METRICS, RuleEditor, SEVERITIES, explain, severityBadge } from "./rules-editor.js";

/** @typedef {import("./sensor-stream-client.js").Reading} Reading */
/** @typedef {import("./sensor-stream-client.js").StatusDetail} StatusDetail */
/** @typedef {import("./sensor-stream-client.js").ReadingsDetail} ReadingsDetail */
/** @typedef {import("./sensor-stream-client.js").Subscription} Subscription */
/** @typedef {import("./sensor-stream-client.js").AlertTriggeredMessage} Alert */
/** @typedef {import("./sensor-stream-client.js").AlertResolvedMessage} AlertResolvedMessage */
/** @typedef {import("./sensor-stream-client.js").UnitInfo} UnitInfo */
/** @typedef {import("./sensor-stream-client.js").AlertRule} AlertRule */
/** @typedef {import("./rules-editor.js").RulesAccess} RulesAccess */
/** @typedef {import("./charts.js").Point} Point */

const TOKEN_STORAGE_KEY = "sensor-stream.token";
const DEFAULT_WEBSOCKET_URL = "ws://127.0.0.1:3001";
// A unit is stale after three of its usual reporting intervals without a reading, and never
// sooner than this (delivery alone takes 1.5-3 s); a silence rule on it says how long instead.
const MIN_STALE_AFTER_MS = 10_000;
const STALE_INTERVALS = 3;
// Readings whose spacing gives a unit's usual interval.
const RECENT_READINGS = 20;
const HISTORY_MS = 5 * 60_000;
const MAX_POINTS = 1500;
const NOTICE_LIFETIME_MS = 20_000;
const MAX_NOTICES = 5;
// A connection quiet for this long is being checked by the client's heartbeat.
const QUIET_AFTER_MS = 12_000;
// How often a row about to turn stale may make the page ask the server whether it is alive.
const PROBE_EVERY_MS = 5_000;
const HISTORY_WORKERS = 3;
const LOW_BATTERY = 20;
const WEAK_SIGNAL_DBM = -100;
const UNIT_ID = /^[A-Za-z0-9_.:-]{1,64}$/;

/**
 * The commands the devices support (devstack/simulator.py acknowledges exactly these).
 * @typedef {object} CommandSpec
 * @property {string} name
 * @property {string} label
 * @property {string} [confirm] asked before sending
 * @property {{ name: string, label: string, min: number, max: number, value: number }} [param]
 */
/** @type {CommandSpec[]} */
const COMMANDS = [
  { name: "identify", label: "Identify" },
  { name: "ping", label: "Ping" },
  { name: "setReportingInterval", label: "Set interval", param: { name: "seconds", label: "Seconds", min: 0.1, max: 3600, value: 5 } },
  { name: "reboot", label: "Reboot", confirm: "Reboot the device {device}? Its units stop reporting until it is back." },
];

/**
 * @typedef {object} Unit
 * @property {string} unitId
 * @property {string | null} siteId
 * @property {string} deviceId "" until a reading names it
 * @property {Reading | null} latest null for a unit listed by the server without its last reading
 * @property {number} seenMs when its last reading arrived (server clock; 0: never)
 * @property {number[]} recent recordedAt (epoch ms) of its newest readings, ordered: its interval
 * @property {Point[]} points temperature by recordedAt, ordered
 * @property {Set<string>} ids of the readings in `points`
 * @property {Alert[]} alerts its active alerts, most severe first
 * @property {string} alertKey what its row shows of them, to redraw only on a change
 * @property {HTMLTableRowElement} row
 * @property {Record<"state" | "temperature" | "sparkline" | "humidity" | "battery" | "signal" | "lastSeen" | "device", HTMLTableCellElement>} cells
 * @property {{ select: HTMLSelectElement, param: HTMLInputElement, paramField: HTMLElement, button: HTMLButtonElement, result: HTMLElement, busy: boolean }} command
 * @property {{ key: string, label: string, severity: number }} state
 */

/** @param {string} id */
function element(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing from the page`);
  return found;
}

const ui = {
  status: element("status"),
  statusText: element("status-text"),
  identity: element("identity"),
  signOut: /** @type {HTMLButtonElement} */ (element("sign-out")),
  banner: element("connection-banner"),
  bannerTitle: element("banner-title"),
  bannerDetail: element("banner-detail"),
  bannerCountdown: element("banner-countdown"),
  retryNow: /** @type {HTMLButtonElement} */ (element("retry-now")),
  signInPanel: element("sign-in-panel"),
  signInText: element("sign-in-text"),
  signIn: /** @type {HTMLButtonElement} */ (element("sign-in")),
  tokenForm: /** @type {HTMLFormElement} */ (element("token-form")),
  tokenInput: /** @type {HTMLInputElement} */ (element("token-input")),
  filterForm: /** @type {HTMLFormElement} */ (element("filter-form")),
  unitsInput: /** @type {HTMLInputElement} */ (element("units-input")),
  knownUnits: element("known-units"),
  subscriptionText: element("subscription-text"),
  filterFeedback: element("filter-feedback"),
  notices: element("notices"),
  search: /** @type {HTMLInputElement} */ (element("search-input")),
  group: /** @type {HTMLSelectElement} */ (element("group-select")),
  sort: /** @type {HTMLSelectElement} */ (element("sort-select")),
  searchFeedback: element("search-feedback"),
  unitCount: element("unit-count"),
  table: element("units-table"),
  body: element("units-body"),
  empty: element("empty"),
  dialog: /** @type {HTMLDialogElement} */ (element("unit-dialog")),
  dialogTitle: element("dialog-title"),
  dialogSubtitle: element("dialog-subtitle"),
  dialogClose: element("dialog-close"),
  dialogChart: element("dialog-chart"),
  dialogSummary: element("dialog-summary"),
  dialogAlerts: element("dialog-alerts"),
  dialogAlertsList: element("dialog-alerts-list"),
  alertsToggle: /** @type {HTMLButtonElement} */ (element("alerts-toggle")),
  alertsCount: element("alerts-count"),
  alertsLabel: element("alerts-label"),
  alertsPanel: element("alerts-panel"),
  alertsClose: element("alerts-close"),
  alertsList: element("alerts-list"),
  alertsEmpty: element("alerts-empty"),
  alertsAnnouncer: element("alerts-announcer"),
  endpoint: element("endpoint"),
  connectionId: element("connection-id"),
  readingCount: element("reading-count"),
};

/** @type {Map<string, Unit>} */
const units = new Map();
/** @type {SensorStreamClient | null} */
let client = null;
/** @type {CognitoAuth | null} */
let auth = null;
let websocketUrl = DEFAULT_WEBSOCKET_URL;
// First estimate of the server's clock minus this browser's: the Date header of config.json.
let clockOffsetMs = 0;
/** @type {Record<string, unknown> | null} claims of the token in use, for display and scope */
let claims = null;
/** @type {StatusDetail} */
let status = { status: "offline" };
let everConnected = false;
/** @type {number | undefined} server time of the last contact before the connection was lost */
let lostAt;
/** @type {Set<string> | null} the units the subscription is limited to; null: all */
let watched = null;
let readingCount = 0;
let lastProbeAt = 0;
/** @type {string[]} row order last laid out */
let layout = [];
let renderScheduled = false;
// New units since the last frame: the layout and the id suggestions are rebuilt once for all.
let unitsAdded = false;
/** @type {Set<Unit>} */
const dirty = new Set();
/** @type {Map<string, Alert>} the active alerts, by alertId */
const activeAlerts = new Map();
/** @type {{ opened: Map<string, Alert>, resolved: Set<string> } | null} alert events during getAlerts */
let alertsRefresh = null;
let httpUrl = "";
/** @type {AlertRulesClient | null} */
let rulesApi = null;
/** @type {AlertRule[] | null} the rules the token sees; null until loaded */
let rules = null;
/** @type {RulesAccess} */
let rulesAccess = { canManage: false, reason: "Loading the rules…" };

// --- Start-up -------------------------------------------------------------------------------

async function main() {
  const config = await loadConfig();
  websocketUrl = typeof config.websocketUrl === "string" && config.websocketUrl ? config.websocketUrl : DEFAULT_WEBSOCKET_URL;
  ui.endpoint.textContent = websocketUrl;
  httpUrl = typeof config.httpUrl === "string" ? config.httpUrl : "";
  wireControls();
  setInterval(tick, 500);

  if (config.auth?.type === "cognito") {
    auth = new CognitoAuth(config.auth);
    ui.tokenForm.hidden = true;
    const problem = await auth.completeSignIn();
    if (problem) notify(problem);
    if (auth.session) {
      const signedIn = auth;
      start(() => signedIn.token());
    } else showSignIn("Sign in to see your organization's units");
    return;
  }
  const token = takeToken();
  ui.tokenInput.value = token;
  if (token) start(token);
  else {
    showStatus({ status: "offline", reason: "no token" });
    ui.tokenInput.focus();
  }
}

/**
 * `config.json` next to the page: the WebSocket endpoint and, in AWS, the sign-in settings.
 * @returns {Promise<{ websocketUrl?: unknown, httpUrl?: unknown, auth?: any }>}
 */
async function loadConfig() {
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    const served = Date.parse(response.headers.get("Date") ?? "");
    if (Number.isFinite(served)) clockOffsetMs = served + 500 - Date.now(); // the header has whole seconds
    if (response.ok) return await response.json();
  } catch {
    // No config next to the page: the local stack's default port.
  }
  return {};
}

/**
 * The token from `?token=` (then removed from the address bar and history) or this tab's storage.
 * @returns {string}
 */
function takeToken() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_STORAGE_KEY, fromUrl);
    url.searchParams.delete("token");
    history.replaceState(null, "", url);
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_STORAGE_KEY) ?? "";
}

function wireControls() {
  ui.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const fresh = ui.tokenInput.value.trim();
    sessionStorage.setItem(TOKEN_STORAGE_KEY, fresh);
    start(fresh);
  });
  ui.filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilter(parseUnitList(ui.unitsInput.value));
  });
  ui.search.addEventListener("input", () => arrangeRows(true));
  ui.group.addEventListener("change", () => arrangeRows(true));
  ui.sort.addEventListener("change", () => arrangeRows(true));
  ui.retryNow.addEventListener("click", () => client?.retryNow());
  ui.signIn.addEventListener("click", () => auth?.signIn());
  ui.signOut.addEventListener("click", () => {
    client?.close();
    auth?.signOut();
  });
  ui.dialogClose.addEventListener("click", () => ui.dialog.close());
  ui.alertsToggle.addEventListener("click", () => showAlertsPanel(ui.alertsToggle.getAttribute("aria-expanded") !== "true"));
  ui.alertsClose.addEventListener("click", () => showAlertsPanel(false));
  ui.alertsPanel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") showAlertsPanel(false);
  });
  ui.dialog.addEventListener("close", () => detail.close());
  for (const button of ui.dialog.querySelectorAll("[data-span]")) {
    button.addEventListener("click", () => detail.showSpan(Number(/** @type {HTMLElement} */ (button).dataset.span)));
  }
}

/** @param {string | (() => Promise<string>)} token */
function start(token) {
  client?.close();
  clearUnits();
  everConnected = false;
  lostAt = undefined;
  watched = null;
  ui.signInPanel.hidden = true;
  showIdentity(typeof token === "string" ? token : auth?.session?.idToken ?? "");
  activeAlerts.clear();
  showAlerts();
  rules = null;
  rulesApi = httpUrl ? new AlertRulesClient({ httpUrl, token }) : null;
  rulesAccess = rulesApi
    ? { canManage: false, reason: "Loading the rules…" }
    : { canManage: false, reason: "Alert rules need the HTTP API: config.json has no httpUrl." };

  const current = new SensorStreamClient({ url: websocketUrl, token, initialResumeMs: HISTORY_MS, clockOffsetMs });
  client = current;
  auth?.useClock(() => current.serverNow());
  current.addEventListener("status", (event) => {
    if (client !== current) return;
    showStatus(event.detail);
    if (event.detail.status === "connected") onConnected(current);
    else if (everConnected && lostAt === undefined) lostAt = current.lastContactAt;
  });
  current.addEventListener("readings", (event) => {
    if (client === current) showReadings(event.detail);
  });
  current.addEventListener("subscription", (event) => {
    if (client === current) showSubscription(event.detail);
  });
  current.addEventListener("alert", (event) => {
    if (client === current) onAlert(event.detail);
  });
  current.addEventListener("error", (event) => {
    if (client === current) notify(`${event.detail.message} (${event.detail.code})`);
  });
  current.connect();
}

/** @param {string} token */
function showIdentity(token) {
  claims = token ? decodeTokenClaims(token) : null;
  const org = claimOf("org");
  const who = claimOf("email") ?? claimOf("cognito:username") ?? claimOf("sub");
  ui.identity.hidden = !claims;
  ui.identity.textContent = claims ? `${org ?? "?"} · ${who ?? "?"}` : "";
  ui.signOut.hidden = !auth || !claims;
}

/**
 * A claim as a string: the plain name, or Cognito's `custom:` attribute of that name.
 * @param {string} name
 * @returns {string | undefined}
 */
function claimOf(name) {
  const value = claims?.[name] ?? claims?.[`custom:${name}`];
  return typeof value === "string" ? value : undefined;
}

/** @returns {string[] | null} the units the token is limited to; null: every unit of its org */
function tokenUnits() {
  const value = claims?.units ?? claims?.["custom:units"];
  if (Array.isArray(value)) return value.map(String);
  if (typeof value === "string") return value.split(",").map((id) => id.trim()).filter(Boolean);
  return null;
}

/**
 * @param {string} text
 * @param {boolean} [signedOut] false when the client already says why (`unauthorized`)
 */
function showSignIn(text, signedOut = true) {
  ui.signInPanel.hidden = false;
  ui.signInText.textContent = text;
  if (signedOut) showStatus({ status: "offline", reason: "not signed in" });
  ui.signIn.focus();
}

/** @param {SensorStreamClient} current */
function onConnected(current) {
  ui.connectionId.textContent = current.connectionId ?? "–";
  if (auth) showIdentity(auth.session?.idToken ?? "");
  const wasLost = everConnected && lostAt !== undefined;
  const since = lostAt;
  everConnected = true;
  lostAt = undefined;
  // Every unit, quiet ones too, and what is wrong now: also what changed while away.
  loadUnits(current);
  loadAlerts(current);
  loadRules();
  // Fill the rows of a filter at once instead of waiting for the next readings.
  const selection = current.subscription;
  if (selection?.scope === "selected") loadLatest(selection.unitIds);
  // The resume replays what arrived while away (bounded); what it could not, history fills.
  if (wasLost && since !== undefined) setTimeout(() => fillOutage(since), 2000);
}

// --- Subscription and scope ---------------------------------------------------------------

/** @param {string} text */
function parseUnitList(text) {
  return [...new Set(text.split(/[\s,]+/).filter(Boolean))];
}

/**
 * Make the subscription exactly these units (all units when empty), saying which ids cannot
 * work and why.
 * @param {string[]} requested
 */
async function applyFilter(requested) {
  const active = client;
  if (!active) {
    notify("Connect first.");
    return;
  }
  const allowed = tokenUnits();
  /** @type {string[]} */
  const problems = [];
  const wanted = requested.filter((unitId) => {
    if (!UNIT_ID.test(unitId)) problems.push(`"${unitId}" is not a unit id (letters, digits and _ . : - only)`);
    else if (allowed && !allowed.includes(unitId)) problems.push(`${unitId} is outside your access`);
    else return true;
    return false;
  });
  if (requested.length > 0 && wanted.length === 0) {
    showFilterFeedback(problems);
    return;
  }
  const current = active.subscription;
  try {
    if (wanted.length === 0) {
      await active.subscribe({ scope: "org" });
    } else if (!current || current.scope === "org") {
      await active.subscribe({ unitIds: wanted }); // narrows the whole org to exactly these
    } else {
      const added = wanted.filter((unitId) => !current.unitIds.includes(unitId));
      const removed = current.unitIds.filter((unitId) => !wanted.includes(unitId));
      if (added.length > 0) await active.subscribe({ unitIds: added });
      if (removed.length > 0 || current.siteIds.length > 0) {
        await active.unsubscribe({ unitIds: removed, siteIds: current.siteIds });
      }
    }
  } catch (error) {
    showFilterFeedback([...problems, `Could not change the subscription: ${describe(error)}`]);
    return;
  }
  const before = watched;
  watched = wanted.length > 0 ? new Set(wanted) : null;
  // Units watched again missed readings meanwhile: their history fills the hole.
  for (const unit of units.values()) {
    if (isWatched(unit) && before && !before.has(unit.unitId)) {
      const newest = unit.points[unit.points.length - 1]?.t ?? active.serverNow() - HISTORY_MS;
      queueHistory(unit, newest, active.serverNow());
    }
  }
  arrangeRows(true);
  // Alert events come only for the subscription: what changed on the others meanwhile.
  loadAlerts(active);
  const unknown = await loadLatest(wanted.filter((unitId) => !units.has(unitId)));
  for (const unitId of unknown) {
    const similar = [...units.keys()].filter((known) => known.toLowerCase().includes(unitId.toLowerCase()) || unitId.toLowerCase().includes(known.toLowerCase()));
    problems.push(
      `No readings ever from ${unitId} in this organization: check the id` +
        (similar.length > 0 ? ` (similar: ${similar.slice(0, 3).join(", ")})` : "") +
        ". It shows here once it reports.",
    );
  }
  showFilterFeedback(problems);
}

/** @param {string[]} problems */
function showFilterFeedback(problems) {
  ui.filterFeedback.textContent = problems.join(" · ");
  ui.filterFeedback.dataset.state = problems.length > 0 ? "problem" : "";
}

/**
 * Rows for these units at once, from their latest readings.
 * @param {string[]} unitIds
 * @returns {Promise<string[]>} the ids that have no reading at all
 */
async function loadLatest(unitIds) {
  const active = client;
  /** @type {string[]} */
  const unknown = [];
  await Promise.all(
    unitIds.map(async (unitId) => {
      try {
        const reading = await active?.getLatest(unitId);
        if (client !== active) return;
        if (reading) showReading(reading);
        else unknown.push(unitId);
      } catch (error) {
        notify(`No latest reading for ${unitId}: ${describe(error)}`);
      }
    }),
  );
  updateEmptyState();
  return unknown.sort();
}

/** @param {Subscription} subscription */
function showSubscription(subscription) {
  const allowed = tokenUnits();
  const org = claimOf("org") ?? "your organization";
  let text;
  if (subscription.scope === "org") {
    text = allowed
      ? `Receiving the ${allowed.length} unit${allowed.length === 1 ? "" : "s"} your access allows: ${allowed.join(", ")}.`
      : `Receiving every unit of ${org}.`;
  } else {
    const parts = [];
    if (subscription.unitIds.length > 0) parts.push(`units ${subscription.unitIds.join(", ")}`);
    if (subscription.siteIds.length > 0) parts.push(`sites ${subscription.siteIds.join(", ")}`);
    text = parts.length > 0 ? `Receiving ${parts.join(" and ")}.` : "Receiving nothing.";
    if (allowed) text += ` Your access allows ${allowed.length} unit${allowed.length === 1 ? "" : "s"}.`;
  }
  ui.subscriptionText.textContent = text;
}

// --- Alerts ---------------------------------------------------------------------------------

/** @param {Alert | AlertResolvedMessage} message */
function onAlert(message) {
  if (message.type === "alert:triggered") {
    activeAlerts.set(message.alertId, message);
    alertsRefresh?.opened.set(message.alertId, message);
    if (isWatchedId(message.unitId)) {
      announce(`${SEVERITIES[message.severity].label} alert on ${message.unitId}: ${message.message}`);
    }
  } else {
    const known = activeAlerts.get(message.alertId);
    activeAlerts.delete(message.alertId);
    alertsRefresh?.resolved.add(message.alertId);
    if (known && isWatchedId(message.unitId)) announce(`Resolved on ${message.unitId}: ${known.message}`);
  }
  showAlerts();
}

/**
 * The active alerts as the server has them (at load, after a reconnect, after a filter change);
 * events that arrive while the answer is on its way are applied on top of it.
 * @param {SensorStreamClient} current
 */
async function loadAlerts(current) {
  const seen = { opened: new Map(), resolved: new Set() };
  alertsRefresh = seen;
  let active;
  try {
    active = await current.getAlerts();
  } catch (error) {
    if (client === current) notify(`Could not load the active alerts: ${describe(error)}`);
    return;
  } finally {
    if (alertsRefresh === seen) alertsRefresh = null;
  }
  if (client !== current) return;
  activeAlerts.clear();
  for (const alert of [...active, ...seen.opened.values()]) {
    if (!seen.resolved.has(alert.alertId)) activeAlerts.set(alert.alertId, alert);
  }
  showAlerts();
}

/**
 * @param {string} unitId
 * @returns {Alert[]} most severe first, then newest first
 */
function alertsOf(unitId) {
  return [...activeAlerts.values()].filter((alert) => alert.unitId === unitId).sort(bySeverityThenNewest);
}

/** @type {(a: Alert, b: Alert) => number} */
function bySeverityThenNewest(a, b) {
  return SEVERITIES[b.severity].rank - SEVERITIES[a.severity].rank || b.triggeredAt.localeCompare(a.triggeredAt);
}

/** @param {string} unitId */
function isWatchedId(unitId) {
  return watched === null || watched.has(unitId);
}

/** The rows, the header's count and list, and the open dialog, after the alerts changed. */
function showAlerts() {
  for (const unit of units.values()) {
    const now = alertsOf(unit.unitId);
    if (now.map((alert) => alert.alertId).join() === unit.alerts.map((alert) => alert.alertId).join()) continue;
    unit.alerts = now;
    markDirty(unit);
  }
  const shown = [...activeAlerts.values()].filter((alert) => isWatchedId(alert.unitId));
  const worst = [...shown].sort(bySeverityThenNewest)[0];
  ui.alertsToggle.dataset.severity = worst?.severity ?? "none";
  ui.alertsCount.textContent = String(shown.length);
  ui.alertsCount.hidden = shown.length === 0;
  if (!worst) ui.alertsLabel.textContent = "No active alerts";
  else {
    const severity = document.createElement("span");
    severity.className = "visually-hidden";
    severity.textContent = `, the worst ${SEVERITIES[worst.severity].label.toLowerCase()}`;
    ui.alertsLabel.replaceChildren(`active alert${shown.length === 1 ? "" : "s"}`, severity);
  }
  renderAlertsList();
  if (detail.unit) showUnitAlerts(detail.unit);
}

/** @type {Map<string, HTMLLIElement>} the header list's items, by alertId */
const alertItems = new Map();

/**
 * The header's list, newest first: on changes and, while open, every tick (the ages). Items are
 * kept and only moved when the order changes, so keyboard focus stays where it is.
 */
function renderAlertsList() {
  const shown = [...activeAlerts.values()]
    .filter((alert) => isWatchedId(alert.unitId))
    .sort((a, b) => b.triggeredAt.localeCompare(a.triggeredAt));
  ui.alertsEmpty.hidden = shown.length > 0;
  const wanted = new Set(shown.map((alert) => alert.alertId));
  for (const [alertId, item] of alertItems) {
    if (wanted.has(alertId)) continue;
    item.remove();
    alertItems.delete(alertId);
  }
  const items = shown.map((alert) => {
    let item = alertItems.get(alert.alertId);
    if (!item) {
      item = alertItem(alert);
      alertItems.set(alert.alertId, item);
    }
    const since = item.querySelector(".alert-since");
    if (since) since.textContent = sinceWords(alert);
    return item;
  });
  const current = [...ui.alertsList.children];
  if (items.length !== current.length || items.some((item, index) => item !== current[index])) {
    const focused = document.activeElement;
    ui.alertsList.replaceChildren(...items);
    if (focused instanceof HTMLElement && ui.alertsList.contains(focused)) focused.focus();
  }
}

/** @param {Alert} alert */
function alertItem(alert) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "alert-item";
  button.dataset.alertId = alert.alertId;
  button.dataset.severity = alert.severity;
  const unit = document.createElement("strong");
  unit.textContent = alert.unitId;
  const message = document.createElement("span");
  message.className = "alert-message";
  message.textContent = alert.message;
  button.append(severityBadge(alert.severity), unit, message, sinceText(alert));
  button.addEventListener("click", () => {
    showAlertsPanel(false);
    focusUnit(alert.unitId);
  });
  item.append(button);
  return item;
}

/** @param {Alert} alert */
function sinceText(alert) {
  const since = document.createElement("span");
  since.className = "alert-since";
  since.textContent = sinceWords(alert);
  return since;
}

/** @param {Alert} alert "since 10:42:13 (3 min ago)" */
function sinceWords(alert) {
  const at = Date.parse(alert.triggeredAt);
  return `since ${clockTime(at)} (${formatAge(Math.max(0, (client?.serverNow() ?? Date.now()) - at))})`;
}

/** @param {boolean} open */
function showAlertsPanel(open) {
  ui.alertsPanel.hidden = !open;
  ui.alertsToggle.setAttribute("aria-expanded", String(open));
  if (open) {
    renderAlertsList();
    /** @type {HTMLElement} */ (ui.alertsList.querySelector("button") ?? ui.alertsClose).focus();
  } else if (ui.alertsPanel.contains(document.activeElement) || document.activeElement === document.body) {
    ui.alertsToggle.focus();
  }
}

/**
 * An alert's unit, shown: its row in view (the search cleared if it hid it) and its dialog open.
 * @param {string} unitId
 */
function focusUnit(unitId) {
  const unit = units.get(unitId);
  if (!unit) {
    notify(`${unitId} has no row on this page (no reading yet).`);
    return;
  }
  if (!matchesSearch(unit)) {
    ui.search.value = "";
    arrangeRows(true);
  }
  unit.row.scrollIntoView({ block: "center" });
  // Focus on the row's link first: closing the dialog brings it back there.
  /** @type {HTMLElement | null} */ (unit.row.querySelector(".unit-link"))?.focus();
  detail.open(unit);
}

/** @param {string} text said by screen readers, politely */
function announce(text) {
  ui.alertsAnnouncer.textContent = text;
}

/** @param {Alert} alert "Temperature high", "Silent" */
function alertTitle(alert) {
  if (alert.alertType === "silence") return "Silent";
  const [metric, direction] = alert.alertType.split("_");
  const known = /** @type {Record<string, { label: string }>} */ (METRICS)[metric];
  return `${known?.label ?? metric} ${direction}`;
}

/**
 * The row's alert: its most severe active alert as a badge with a shape and words (and the rest
 * counted), the row marked by severity.
 * @param {Unit} unit
 */
function renderAlertBadge(unit) {
  const top = unit.alerts[0];
  const key = top ? unit.alerts.map((alert) => alert.alertId).join() : "";
  if (key === unit.alertKey) return;
  unit.alertKey = key;
  unit.cells.state.querySelector(".severity-badge")?.remove();
  if (top) {
    const more = unit.alerts.length > 1 ? ` (+${unit.alerts.length - 1})` : "";
    const badge = severityBadge(top.severity, `${SEVERITIES[top.severity].label}: ${alertTitle(top)}${more}`);
    badge.title = unit.alerts.map((alert) => alert.message).join("\n");
    unit.cells.state.prepend(badge);
    unit.row.dataset.alert = top.severity;
  } else delete unit.row.dataset.alert;
}

/** @param {Unit} unit the dialog's list of the unit's active alerts */
function showUnitAlerts(unit) {
  ui.dialogAlerts.hidden = unit.alerts.length === 0;
  ui.dialogAlertsList.replaceChildren(
    ...unit.alerts.map((alert) => {
      const item = document.createElement("li");
      const message = document.createElement("span");
      message.textContent = alert.message;
      item.append(severityBadge(alert.severity), message, sinceText(alert));
      return item;
    }),
  );
}

// --- Alert rules ------------------------------------------------------------------------------

/** How long after a failed load of the alert rules the page tries again. */
const RULES_RETRY_MS = 5000;

/** The rules the token sees: for the silence rules' stale times and the unit dialog. */
async function loadRules() {
  const api = rulesApi;
  if (api) {
    try {
      const listed = await api.list();
      if (api !== rulesApi) return;
      rules = listed;
      rulesAccess = { canManage: true };
    } catch (error) {
      if (api !== rulesApi) return;
      const refused = refusal(error);
      rulesAccess = { canManage: false, reason: refused ?? `Could not load the alert rules: ${explain(error)}` };
      // A passing failure (a timeout, a 5xx) is tried again; a refusal stays until the token changes.
      if (!refused) setTimeout(() => api === rulesApi && loadRules(), RULES_RETRY_MS);
    }
  }
  editor.refresh();
  renderStates();
}

/**
 * @param {unknown} error
 * @returns {string | null} why this token may not manage rules at all (401), or null
 */
function refusal(error) {
  const code = /** @type {{ code?: string }} */ (error).code;
  return code === "unauthorized" || (code === "forbidden" && rules === null)
    ? `Alert rules cannot be shown or changed with this access: ${explain(error)}`
    : null;
}

const editor = new RuleEditor({
  rules: () => rules,
  access: () => rulesAccess,
  async save(ruleId, body) {
    const api = rulesApi;
    if (!api) throw new Error(rulesAccess.reason ?? "no rules API");
    try {
      const stored = await api.put(ruleId, body);
      if (api === rulesApi) rules = [...(rules ?? []).filter((rule) => rule.ruleId !== ruleId), stored];
      renderStates();
      return stored;
    } catch (error) {
      denyIfRefused(error);
      throw error;
    }
  },
  async remove(ruleId) {
    const api = rulesApi;
    if (!api) throw new Error(rulesAccess.reason ?? "no rules API");
    try {
      await api.delete(ruleId);
    } catch (error) {
      denyIfRefused(error);
      // Already gone: what the user wanted.
      if (/** @type {{ code?: string }} */ (error).code !== "not_found") throw error;
    }
    if (api === rulesApi) rules = (rules ?? []).filter((rule) => rule.ruleId !== ruleId);
    renderStates();
  },
});

/** @param {unknown} error a refused token turns the rule controls off, with the reason */
function denyIfRefused(error) {
  const reason = refusal(error);
  if (reason) rulesAccess = { canManage: false, reason };
}

// --- Status, banner and notices -----------------------------------------------------------

const EMPTY_TEXTS = {
  connecting: "Connecting…",
  connected: "Waiting for readings…",
  reconnecting: "Reconnecting…",
  offline: "Not connected.",
  unauthorized: "Connect with a valid token to see readings.",
};

/** @param {StatusDetail} detail */
function showStatus(detail) {
  status = detail;
  ui.status.dataset.status = detail.status;
  ui.empty.textContent = EMPTY_TEXTS[detail.status];
  ui.status.title = detail.reason ?? "";
  if (detail.status !== "connected") ui.connectionId.textContent = "–";
  if (detail.status === "unauthorized") {
    if (auth) showSignIn(`Your session has ended (${detail.reason ?? "refused"}). Sign in again.`, false);
    else {
      notify(`Not authorized: ${detail.reason ?? "the server refused the token"}. Paste a valid token.`);
      ui.tokenInput.focus();
    }
  }
  showConnection();
  renderStates();
}

/** The badge, the banner and its countdown: on every status change and every tick. */
function showConnection() {
  const now = Date.now();
  const connected = status.status === "connected";
  let label = { connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…", offline: "Offline", unauthorized: "Not signed in" }[status.status];
  if (status.status === "unauthorized" && !auth) label = "Unauthorized";
  const countdown = status.status === "reconnecting" && status.retryAt !== undefined && status.retryAt > now
    ? Math.ceil((status.retryAt - now) / 1000)
    : null;
  if (countdown !== null) label = `Reconnecting in ${countdown} s`;
  const contact = client?.lastContactAt;
  const quiet = connected && contact !== undefined && client !== null && client.serverNow() - contact > QUIET_AFTER_MS;
  if (quiet) label = "Connected · checking…";
  ui.status.dataset.quiet = String(quiet);
  if (ui.statusText.textContent !== label) ui.statusText.textContent = label;

  const closedByUs = status.status === "offline" && status.reason === "closed";
  const showBanner = !connected && !closedByUs && (everConnected || units.size > 0);
  ui.banner.hidden = !showBanner;
  ui.table.classList.toggle("out-of-date", !connected && units.size > 0);
  if (!showBanner) return;
  const title = {
    connecting: "Connecting",
    connected: "",
    reconnecting: "Connection lost",
    offline: "You are offline",
    unauthorized: "Not connected: the session has ended",
  }[status.status];
  ui.bannerTitle.textContent = title;
  const since = lostAt ?? contact;
  ui.bannerDetail.textContent = since !== undefined && client
    ? `Data may be out of date: last update at ${clockTime(since)} (${formatAge(client.serverNow() - since)}).`
    : "Data may be out of date.";
  ui.bannerCountdown.textContent = countdown !== null ? `Reconnecting in ${countdown} s` : status.status === "reconnecting" ? "Reconnecting…" : "";
  ui.retryNow.hidden = status.status === "unauthorized" || status.status === "connecting";
}

/** @param {number} serverMs a moment on the server's clock, as this browser's wall-clock time */
function clockTime(serverMs) {
  return new Date(serverMs - (client?.clockOffsetMs ?? 0)).toLocaleTimeString();
}

/** @param {string} text */
function notify(text) {
  const notice = document.createElement("div");
  notice.className = "notice";
  const message = document.createElement("span");
  message.textContent = text;
  const dismiss = document.createElement("button");
  dismiss.type = "button";
  dismiss.className = "dismiss";
  dismiss.setAttribute("aria-label", "Dismiss");
  dismiss.textContent = "×";
  dismiss.addEventListener("click", () => notice.remove());
  notice.append(message, dismiss);
  ui.notices.prepend(notice);
  while (ui.notices.children.length > MAX_NOTICES) ui.notices.lastElementChild?.remove();
  setTimeout(() => notice.remove(), NOTICE_LIFETIME_MS);
}

function tick() {
  showConnection();
  renderStates();
  if (ui.sort.value === "state" || ui.sort.value === "seen" || ui.sort.value === "severity") arrangeRows(false);
  if (!ui.alertsPanel.hidden) renderAlertsList();
}

// --- Readings and history -----------------------------------------------------------------

/** @param {ReadingsDetail} detail */
function showReadings(detail) {
  for (const reading of detail.readings) showReading(reading);
  readingCount += detail.readings.length;
  showReadingCount();
  updateEmptyState();
}

/** @param {Reading} reading */
function showReading(reading) {
  let unit = units.get(reading.unitId);
  if (!unit) {
    unit = addUnit(reading.unitId, reading.siteId);
    fillHistory(unit);
  }
  addPoint(unit, reading);
  // Replayed or late readings fill the chart but never replace a newer value.
  if (!unit.latest || reading.recordedAt >= unit.latest.recordedAt) unit.latest = reading;
  unit.seenMs = Math.max(unit.seenMs, Date.parse(reading.receivedAt));
  if (detail.unit === unit) detail.live(reading);
  markDirty(unit);
}

/**
 * Every unit of the org that has reported, quiet ones included (they would never show up
 * through readings), merged with what the page already has.
 * @param {SensorStreamClient} current
 */
async function loadUnits(current) {
  let listed;
  try {
    listed = await current.listUnits();
  } catch (error) {
    if (client === current) notify(`Could not list the units: ${describe(error)}`);
    return;
  }
  if (client !== current) return;
  for (const info of listed) {
    const known = units.get(info.unitId);
    const unit = known ?? addUnit(info.unitId, info.siteId);
    const seenMs = info.lastSeenAt ? Date.parse(info.lastSeenAt) : 0;
    unit.seenMs = Math.max(unit.seenMs, seenMs);
    if (info.lastReading) showReading(info.lastReading);
    if (!known) {
      if (unit.seenMs > current.serverNow() - HISTORY_MS) fillHistory(unit);
      else learnInterval(unit);
    }
    markDirty(unit);
  }
  updateEmptyState();
}

/** @param {Unit} unit the last 5 minutes of a unit new to the page */
function fillHistory(unit) {
  const active = client;
  if (active) queueHistory(unit, active.serverNow() - HISTORY_MS, null);
}

/**
 * A quiet unit's usual interval, from its last few readings (its 5 minutes of history are empty).
 * @param {Unit} unit
 */
async function learnInterval(unit) {
  const active = client;
  const newest = unit.latest;
  if (!active || !newest) return;
  const until = Date.parse(newest.recordedAt);
  try {
    const { readings } = await active.getHistory(unit.unitId, {
      since: new Date(until - 86_400_000).toISOString(),
      until: new Date(until + 1).toISOString(),
      limit: RECENT_READINGS,
    });
    if (client !== active) return;
    for (const reading of readings) rememberRecorded(unit, Date.parse(reading.recordedAt));
    markDirty(unit);
  } catch {
    // Without it the unit is judged by the 10-s floor, as a unit with a single reading is.
  }
}

/**
 * @param {Unit} unit
 * @param {number} recordedMs
 */
function rememberRecorded(unit, recordedMs) {
  const recent = unit.recent;
  let index = recent.length;
  while (index > 0 && recent[index - 1] > recordedMs) index -= 1;
  if (recent[index - 1] === recordedMs) return;
  recent.splice(index, 0, recordedMs);
  if (recent.length > RECENT_READINGS) recent.shift();
}

/**
 * @param {Unit} unit
 * @param {Reading} reading
 */
function addPoint(unit, reading) {
  if (unit.ids.has(reading.id)) return;
  unit.ids.add(reading.id);
  const point = { t: Date.parse(reading.recordedAt), v: reading.temperature };
  rememberRecorded(unit, point.t);
  const points = unit.points;
  let index = points.length;
  while (index > 0 && points[index - 1].t > point.t) index -= 1;
  points.splice(index, 0, point);
  const oldest = (client?.serverNow() ?? Date.now()) - HISTORY_MS;
  while (points.length > MAX_POINTS || (points.length > 1 && points[0].t < oldest)) points.shift();
  if (unit.ids.size > 2 * MAX_POINTS) unit.ids = new Set([...unit.ids].slice(-MAX_POINTS));
}

/**
 * @typedef {object} HistoryJob
 * @property {Unit} unit
 * @property {number} since epoch ms
 * @property {number | null} until epoch ms; null: up to the oldest point known when the job runs
 * @property {number} [attempt] failed attempts so far
 */
/** @type {HistoryJob[]} */
const historyQueue = [];
let historyWorkers = 0;

/**
 * Ask the server for a unit's readings in a span the page does not have. Visible rows go
 * first; the client keeps the requests under the server's rate limit.
 * @param {Unit} unit
 * @param {number} since
 * @param {number | null} until
 * @param {number} [attempt]
 */
function queueHistory(unit, since, until, attempt = 0) {
  historyQueue.push({ unit, since, until, attempt });
  while (historyWorkers < HISTORY_WORKERS) {
    historyWorkers += 1;
    // A moment's delay: the replay after hello usually brings the newest part first.
    setTimeout(runHistoryWorker, 300);
  }
}

async function runHistoryWorker() {
  try {
    for (;;) {
      const index = historyQueue.findIndex((job) => isOnScreen(job.unit.row));
      const [job] = historyQueue.splice(index >= 0 ? index : 0, 1);
      if (!job) return;
      await loadHistory(job);
    }
  } finally {
    historyWorkers -= 1;
  }
}

/** @param {HistoryJob} job */
async function loadHistory(job) {
  const active = client;
  const { unit } = job;
  if (!active || units.get(unit.unitId) !== unit) return;
  let until = job.until ?? unit.points[0]?.t ?? active.serverNow();
  // Pages of at most 300, newest first, until the span is covered.
  for (let page = 0; page < 4 && until > job.since; page += 1) {
    let answer;
    try {
      answer = await active.getHistory(unit.unitId, { since: new Date(job.since).toISOString(), until: new Date(until).toISOString() });
    } catch (error) {
      if (client !== active) return;
      const code = /** @type {{ code?: string }} */ (error).code;
      const attempt = (job.attempt ?? 0) + 1;
      // Lost or slow connections pass: try again once it is back (the client waits for it).
      if ((code === "timeout" || code === "disconnected" || code === "not_connected") && attempt < 4) {
        setTimeout(() => queueHistory(unit, job.since, job.until, attempt), 2000 * attempt);
      } else notify(`No history for ${unit.unitId}: ${describe(error)}`);
      return;
    }
    if (client !== active) return;
    for (const reading of answer.readings) addPoint(unit, reading);
    markDirty(unit);
    if (!answer.more || answer.readings.length === 0) return;
    until = Date.parse(answer.readings[0].recordedAt);
  }
}

/**
 * After a reconnect: units whose history has a hole over the time away get it filled.
 * @param {number} since server time of the last contact before the connection was lost
 */
function fillOutage(since) {
  const active = client;
  if (!active) return;
  const now = active.serverNow();
  for (const unit of units.values()) {
    if (!isWatched(unit)) continue;
    const threshold = gapThresholdMs(unit.points);
    const around = unit.points.filter((point) => point.t >= since - threshold && point.t <= now);
    let previous = since - threshold;
    for (const point of [...around, { t: now, v: 0 }]) {
      if (point.t - previous > threshold) {
        queueHistory(unit, previous, point.t);
        break;
      }
      previous = point.t;
    }
  }
}

/** @param {Element} row */
function isOnScreen(row) {
  if (!row.isConnected || /** @type {HTMLElement} */ (row).hidden) return false;
  const box = row.getBoundingClientRect();
  return box.bottom > 0 && box.top < window.innerHeight;
}

// --- Rows -------------------------------------------------------------------------------------

const COLUMNS = /** @type {const} */ ([
  ["state", "state", "State"],
  ["temperature", "temperature num", "Temperature"],
  ["sparkline", "sparkline", "Last 5 minutes"],
  ["humidity", "humidity num", "Humidity"],
  ["battery", "battery", "Battery"],
  ["signal", "signal", "Signal"],
  ["lastSeen", "last-seen", "Last seen"],
  ["device", "device", "Device"],
]);

/**
 * A row for a unit new to the page; its readings come after.
 * @param {string} unitId
 * @param {string | null} siteId
 */
function addUnit(unitId, siteId) {
  const row = document.createElement("tr");
  row.dataset.unitId = unitId;
  const cell = (/** @type {string} */ className, /** @type {string} */ label) => {
    const td = document.createElement("td");
    td.className = className;
    td.dataset.label = label;
    return td;
  };
  const name = cell("unit", "Unit");
  const link = document.createElement("button");
  link.type = "button";
  link.className = "unit-link";
  link.textContent = unitId;
  link.setAttribute("aria-label", `${unitId}: history, alerts and rules`);
  name.append(link);
  if (siteId) {
    const site = document.createElement("span");
    site.className = "site";
    site.textContent = siteId;
    name.append(site);
  }
  const cells = /** @type {Unit["cells"]} */ (Object.fromEntries(COLUMNS.map(([key, className, label]) => [key, cell(className, label)])));
  const commandCell = cell("command", "Command");
  const command = commandControls(unitId);
  commandCell.append(command.group, command.result);
  row.append(name, ...Object.values(cells), commandCell);

  /** @type {Unit} */
  const unit = {
    unitId,
    siteId,
    deviceId: "",
    latest: null,
    seenMs: 0,
    recent: [],
    points: [],
    ids: new Set(),
    alerts: [],
    alertKey: "",
    row,
    cells,
    command: { ...command, busy: false },
    state: { key: "ok", label: "OK", severity: 0 },
  };
  link.addEventListener("click", () => detail.open(unit));
  command.button.addEventListener("click", () => sendCommand(unit));
  units.set(unitId, unit);
  unit.alerts = alertsOf(unitId);
  unitsAdded = true;
  return unit;
}

/** @param {string} unitId */
function commandControls(unitId) {
  const group = document.createElement("div");
  group.className = "command-group";
  const select = document.createElement("select");
  select.setAttribute("aria-label", `Command for ${unitId}`);
  for (const spec of COMMANDS) select.append(new Option(spec.label, spec.name));
  const paramField = document.createElement("label");
  paramField.className = "param";
  paramField.hidden = true;
  const paramLabel = document.createElement("span");
  paramLabel.textContent = "s";
  const param = document.createElement("input");
  param.type = "number";
  param.inputMode = "decimal";
  param.setAttribute("aria-label", `Reporting interval in seconds for ${unitId}`);
  paramField.append(param, paramLabel);
  const button = document.createElement("button");
  button.type = "button";
  button.className = "command-button";
  button.textContent = "Send";
  button.setAttribute("aria-label", `Send the command for ${unitId}`);
  const result = document.createElement("p");
  result.className = "command-state";
  result.setAttribute("aria-live", "polite");
  select.addEventListener("change", () => {
    const spec = COMMANDS.find((candidate) => candidate.name === select.value);
    paramField.hidden = !spec?.param;
    if (spec?.param) {
      param.min = String(spec.param.min);
      param.max = String(spec.param.max);
      param.step = "any";
      if (!param.value) param.value = String(spec.param.value);
    }
  });
  group.append(select, paramField, button);
  return { group, select, param, paramField, button, result };
}

/** @param {string} unitId */
function removeUnit(unitId) {
  units.get(unitId)?.row.remove();
  units.delete(unitId);
}

function clearUnits() {
  for (const unitId of [...units.keys()]) removeUnit(unitId);
  ui.body.replaceChildren();
  layout = [];
  readingCount = 0;
  historyQueue.length = 0;
  showReadingCount();
  updateEmptyState();
  updateKnownUnits();
}

function showReadingCount() {
  ui.readingCount.textContent = readingCount.toLocaleString();
  ui.readingCount.dataset.count = String(readingCount);
}

function updateEmptyState() {
  ui.empty.hidden = units.size > 0;
}

function updateKnownUnits() {
  const ids = [...units.keys()].sort(byName);
  ui.knownUnits.replaceChildren(...ids.map((unitId) => new Option(unitId)));
  ui.unitsInput.placeholder = ids.length > 0 ? `All units, or e.g. ${ids.slice(0, 2).join(", ")}` : "All units";
}

/** @param {Unit} unit */
function isWatched(unit) {
  return watched === null || watched.has(unit.unitId);
}

/** @param {Unit} unit */
function matchesSearch(unit) {
  const needle = ui.search.value.trim().toLowerCase();
  if (!needle) return true;
  return [unit.unitId, unit.siteId ?? "", unit.deviceId].some((text) => text.toLowerCase().includes(needle));
}

/** @type {(a: string, b: string) => number} */
const byName = new Intl.Collator(undefined, { numeric: true }).compare;

/** @param {Unit} unit 0 without an active alert, else the rank of its most severe one */
function alertRank(unit) {
  const top = unit.alerts[0];
  return top ? SEVERITIES[top.severity].rank : 0;
}

/** @type {Record<string, (a: Unit, b: Unit) => number>} */
const SORTS = {
  name: (a, b) => byName(a.unitId, b.unitId),
  state: (a, b) => b.state.severity - a.state.severity || byName(a.unitId, b.unitId),
  severity: (a, b) =>
    alertRank(b) - alertRank(a) ||
    b.alerts.length - a.alerts.length ||
    b.state.severity - a.state.severity ||
    byName(a.unitId, b.unitId),
  temperature: (a, b) =>
    (b.latest?.temperature ?? -Infinity) - (a.latest?.temperature ?? -Infinity) || byName(a.unitId, b.unitId),
  seen: (a, b) => a.seenMs - b.seenMs || byName(a.unitId, b.unitId),
};

/** @type {Map<string, HTMLTableRowElement>} */
const groupRows = new Map();

/**
 * Lays the rows out: watched units matching the search, grouped and sorted as chosen. Moves
 * DOM nodes only when the order changed.
 * @param {boolean} force also when only the search or grouping changed
 */
function arrangeRows(force) {
  const shown = [...units.values()].filter((unit) => isWatched(unit) && matchesSearch(unit));
  shown.sort(SORTS[ui.sort.value] ?? SORTS.name);
  /** @type {Map<string, Unit[]>} */
  const groups = new Map();
  if (ui.group.value === "site") {
    for (const unit of [...shown].sort((a, b) => byName(a.siteId ?? "\uffff", b.siteId ?? "\uffff"))) {
      const key = unit.siteId ?? "";
      if (!groups.has(key)) groups.set(key, []);
    }
    for (const unit of shown) groups.get(unit.siteId ?? "")?.push(unit);
  } else groups.set("*", shown);

  const order = [...groups].flatMap(([site, members]) => [`#${site}`, ...members.map((unit) => unit.unitId)]);
  if (!force && order.join("\n") === layout.join("\n")) return;
  layout = order;
  /** @type {HTMLTableRowElement[]} */
  const rows = [];
  for (const [site, members] of groups) {
    if (site !== "*") rows.push(groupRow(site, members.length));
    rows.push(...members.map((unit) => unit.row));
  }
  const shownIds = new Set(shown.map((unit) => unit.unitId));
  for (const unit of units.values()) unit.row.hidden = !shownIds.has(unit.unitId);
  ui.body.replaceChildren(...rows);

  const total = [...units.values()].filter(isWatched).length;
  ui.unitCount.textContent = total > 0 ? (shown.length === total ? `(${total})` : `(${shown.length} of ${total})`) : "";
  const needle = ui.search.value.trim();
  ui.searchFeedback.hidden = !needle || shown.length > 0;
  ui.searchFeedback.textContent = needle ? `No unit, site or device matches "${needle}".` : "";
}

/**
 * @param {string} site
 * @param {number} count
 */
function groupRow(site, count) {
  let row = groupRows.get(site);
  if (!row) {
    row = document.createElement("tr");
    row.className = "group-row";
    const heading = document.createElement("th");
    heading.scope = "colgroup";
    heading.colSpan = COLUMNS.length + 2;
    row.append(heading);
    groupRows.set(site, row);
  }
  const heading = /** @type {HTMLElement} */ (row.firstElementChild);
  heading.textContent = `${site || "No site"} · ${count} unit${count === 1 ? "" : "s"}`;
  return row;
}

/** @param {Unit} unit */
function markDirty(unit) {
  dirty.add(unit);
  if (renderScheduled) return;
  renderScheduled = true;
  // One render per frame however many readings came in; none while the tab is hidden.
  requestAnimationFrame(() => {
    renderScheduled = false;
    for (const each of dirty) renderUnit(each);
    dirty.clear();
    if (unitsAdded) updateKnownUnits();
    if (unitsAdded || ui.sort.value !== "name") arrangeRows(unitsAdded);
    unitsAdded = false;
  });
}

/** @param {Unit} unit */
function renderUnit(unit) {
  const reading = unit.latest;
  if (reading) {
    unit.deviceId = reading.deviceId;
    unit.cells.temperature.textContent = `${reading.temperature.toFixed(1)} °C`;
    unit.cells.humidity.textContent = reading.humidity === null ? "–" : `${Math.round(reading.humidity)} %`;
    renderBattery(unit.cells.battery, reading.battery);
    renderSignal(unit.cells.signal, reading.signalStrength);
    unit.cells.device.textContent = reading.deviceId;
    unit.command.button.setAttribute("aria-label", `Send the command to ${reading.deviceId} for ${unit.unitId}`);
  } else {
    for (const key of /** @type {const} */ (["temperature", "humidity", "battery", "signal", "device"])) {
      unit.cells[key].textContent = "–";
    }
  }
  const now = client?.serverNow() ?? Date.now();
  unit.cells.sparkline.replaceChildren(sparkline(unit.points, now, HISTORY_MS, unit.unitId));
  renderState(unit);
}

function renderStates() {
  for (const unit of units.values()) renderState(unit);
}

/**
 * How long the unit may go without a reading before it is stale: its silence rule's
 * `maxSilenceSeconds` (the operator said so), else three of its usual intervals (the median
 * spacing of its recent readings), at least 10 s.
 * @param {Unit} unit
 */
function staleAfterMs(unit) {
  const silences = (rules ?? [])
    .filter((rule) => rule.metric === "silence" && rule.maxSilenceSeconds !== undefined && ruleAppliesTo(rule, unit.unitId, unit.siteId))
    .map((rule) => /** @type {number} */ (rule.maxSilenceSeconds) * 1000);
  if (silences.length > 0) return Math.min(...silences);
  const steps = unit.recent.slice(1).map((t, index) => t - unit.recent[index]).sort((a, b) => a - b);
  const usual = steps.length > 0 ? steps[Math.floor(steps.length / 2)] : 0;
  return Math.max(MIN_STALE_AFTER_MS, STALE_INTERVALS * usual);
}

/**
 * The unit's age and state. A unit is stale only when the server was heard from longer than
 * the unit's own stale time after its last reading arrived: during an outage the page blames
 * the connection (banner), not every device.
 * @param {Unit} unit
 */
function renderState(unit) {
  const active = client;
  const now = active?.serverNow() ?? Date.now();
  const receivedMs = unit.seenMs;
  const healthy = active?.status === "connected";
  const contact = active?.lastContactAt ?? 0;
  const staleAfter = staleAfterMs(unit);
  const stale = healthy && contact - receivedMs > staleAfter;
  if (healthy && !stale && now - receivedMs > staleAfter && Date.now() - lastProbeAt > PROBE_EVERY_MS) {
    // About to call the device stale: first make sure the connection is what is quiet.
    lastProbeAt = Date.now();
    active.ping().catch(() => {});
  }
  const reading = unit.latest;
  unit.state = stale
    ? { key: "stale", label: "Stale", severity: 3 }
    : reading?.battery != null && reading.battery < LOW_BATTERY
      ? { key: "battery", label: "Low battery", severity: 2 }
      : reading?.signalStrength != null && reading.signalStrength < WEAK_SIGNAL_DBM
        ? { key: "signal", label: "Weak signal", severity: 1 }
        : { key: "ok", label: "OK", severity: 0 };
  unit.row.classList.toggle("stale", stale);
  renderAlertBadge(unit);
  let badge = unit.cells.state.querySelector(".state-badge");
  if (!badge) {
    badge = document.createElement("span");
    unit.cells.state.append(badge);
  }
  badge.className = `state-badge ${stale ? "stale-marker" : ""}`;
  /** @type {HTMLElement} */ (badge).dataset.state = unit.state.key;
  if (badge.textContent !== unit.state.label) badge.textContent = unit.state.label;
  /** @type {HTMLElement} */ (badge).title = stale ? `No reading for longer than ${formatSpan(staleAfter)}` : "";

  const age = receivedMs > 0 ? formatAge(Math.max(0, now - receivedMs)) : "never";
  if (unit.cells.lastSeen.textContent !== age) unit.cells.lastSeen.textContent = age;
  unit.cells.lastSeen.title = receivedMs > 0 ? new Date(receivedMs - (active?.clockOffsetMs ?? 0)).toLocaleString() : "";

  const button = unit.command.button;
  const why = !healthy
    ? "Not connected"
    : !unit.deviceId
      ? "Its device is not known yet: no recent reading"
      : stale
        ? `${unit.deviceId} has not reported for ${age.replace(" ago", "")}: commands are off until it does`
        : "";
  button.disabled = unit.command.busy || why !== "";
  button.title = why;
  unit.command.select.disabled = why !== "";
}

/**
 * @param {HTMLTableCellElement} cell
 * @param {number | null} battery
 */
function renderBattery(cell, battery) {
  if (battery === null) {
    cell.textContent = "–";
    return;
  }
  const meter = document.createElement("span");
  meter.className = "meter";
  meter.setAttribute("aria-hidden", "true");
  const fill = document.createElement("span");
  fill.style.width = `${Math.max(0, Math.min(100, battery))}%`;
  meter.append(fill);
  const label = document.createElement("span");
  label.textContent = `${Math.round(battery)} %`;
  const group = document.createElement("span");
  group.className = "inline-group";
  group.append(meter, label);
  cell.dataset.level = battery < LOW_BATTERY ? "low" : battery < 50 ? "medium" : "high";
  cell.replaceChildren(group);
}

/**
 * @param {HTMLTableCellElement} cell
 * @param {number | null} dbm
 */
function renderSignal(cell, dbm) {
  if (dbm === null) {
    cell.textContent = "–";
    return;
  }
  // Rough bars for a glance: -50 dBm and better is excellent, -110 and worse is nothing.
  const level = Math.max(0, Math.min(4, Math.ceil((dbm + 110) / 15)));
  const bars = document.createElement("span");
  bars.className = "bars";
  bars.setAttribute("aria-hidden", "true");
  for (let bar = 1; bar <= 4; bar += 1) {
    const stick = document.createElement("span");
    if (bar <= level) stick.className = "on";
    bars.append(stick);
  }
  const label = document.createElement("span");
  label.textContent = `${dbm} dBm`;
  cell.replaceChildren(bars, label);
}

/** @param {number} ms */
function formatAge(ms) {
  const seconds = Math.round(ms / 1000);
  if (seconds < 2) return "just now";
  if (seconds < 90) return `${seconds} s ago`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 90) return `${minutes} min ago`;
  return `${Math.round(minutes / 60)} h ago`;
}

// --- Commands -------------------------------------------------------------------------------

/** @param {Unit} unit */
async function sendCommand(unit) {
  const active = client;
  if (!active) return;
  const { select, param, result } = unit.command;
  const spec = COMMANDS.find((candidate) => candidate.name === select.value) ?? COMMANDS[0];
  const deviceId = unit.deviceId;
  if (!deviceId) return;
  /** @type {Record<string, unknown>} */
  const params = {};
  const setState = (/** @type {string} */ state, /** @type {string} */ text) => {
    result.dataset.state = state;
    result.textContent = text;
  };
  if (spec.param) {
    const value = Number(param.value);
    if (!param.value || !Number.isFinite(value) || value < spec.param.min || value > spec.param.max) {
      setState("error", `${spec.param.label}: a number from ${spec.param.min} to ${spec.param.max}`);
      param.focus();
      return;
    }
    params[spec.param.name] = value;
  }
  if (spec.confirm && !window.confirm(spec.confirm.replace("{device}", deviceId))) return;
  unit.command.busy = true;
  renderState(unit);
  setState("sending", `${spec.label}: sending…`);
  try {
    const ack = await active.sendCommand(deviceId, spec.name, params, {
      onAccepted: () => setState("accepted", `${spec.label}: accepted, waiting for ${deviceId}…`),
    });
    setState("ack", `✓ ${spec.label}: ${ack.detail ?? "done"}`);
  } catch (error) {
    const code = /** @type {{ code?: string }} */ (error).code;
    if (code === "command_timeout" || code === "timeout") setState("timeout", `${spec.label}: no answer from ${deviceId} (timed out)`);
    else setState("error", `✗ ${spec.label}: ${describe(error)}`);
  } finally {
    unit.command.busy = false;
    renderState(unit);
  }
}

// --- The history dialog -----------------------------------------------------------------------

const detail = {
  /** @type {Unit | null} */
  unit: null,
  spanMs: 15 * 60_000,
  /** @type {Point[]} */
  points: [],
  /** @type {Set<string>} */
  ids: new Set(),
  /** @type {HistoryChart | null} */
  chart: null,
  redrawPending: false,

  /** @param {Unit} unit */
  open(unit) {
    this.unit = unit;
    ui.dialogTitle.textContent = unit.unitId;
    ui.dialogSubtitle.textContent = [unit.siteId && `site ${unit.siteId}`, unit.deviceId && `device ${unit.deviceId}`].filter(Boolean).join(" · ");
    showUnitAlerts(unit);
    editor.open(unit);
    if (!ui.dialog.open) ui.dialog.showModal();
    this.chart ??= new HistoryChart(ui.dialogChart);
    this.showSpan(this.spanMs);
  },

  close() {
    this.unit = null;
    this.chart?.destroy();
    editor.close();
  },

  /** @param {number} spanMs */
  async showSpan(spanMs) {
    const unit = this.unit;
    const active = client;
    if (!unit || !active) return;
    this.spanMs = spanMs;
    for (const button of ui.dialog.querySelectorAll("[data-span]")) {
      button.setAttribute("aria-pressed", String(Number(/** @type {HTMLElement} */ (button).dataset.span) === spanMs));
    }
    this.points = [];
    this.ids = new Set();
    for (const point of unit.points) this.points.push(point);
    ui.dialogSummary.textContent = "Loading…";
    this.draw();
    const since = active.serverNow() - spanMs;
    let until = active.serverNow();
    // Pages of up to 300 readings, newest first; an hour at one a second is 12 of them.
    for (let page = 0; page < 15; page += 1) {
      let answer;
      try {
        answer = await active.getHistory(unit.unitId, { since: new Date(since).toISOString(), until: new Date(until).toISOString() });
      } catch (error) {
        ui.dialogSummary.textContent = `Could not load the history: ${describe(error)}`;
        return;
      }
      if (this.unit !== unit || this.spanMs !== spanMs) return;
      this.merge(answer.readings);
      this.draw();
      if (!answer.more || answer.readings.length === 0) break;
      until = Date.parse(answer.readings[0].recordedAt);
    }
  },

  /** @param {Reading[]} readings */
  merge(readings) {
    const known = new Set(this.points.map((point) => point.t));
    for (const reading of readings) {
      if (this.ids.has(reading.id)) continue;
      this.ids.add(reading.id);
      const t = Date.parse(reading.recordedAt);
      if (!known.has(t)) this.points.push({ t, v: reading.temperature });
    }
    this.points.sort((a, b) => a.t - b.t);
  },

  /** @param {Reading} reading a new reading of the open unit */
  live(reading) {
    this.merge([reading]);
    if (this.redrawPending) return;
    this.redrawPending = true;
    setTimeout(() => {
      this.redrawPending = false;
      if (this.unit) this.draw();
    }, 1000);
  },

  draw() {
    const active = client;
    if (!this.chart || !active) return;
    const end = active.serverNow();
    const start = end - this.spanMs;
    const points = this.points.filter((point) => point.t >= start);
    this.chart.show(points, start, end);
    if (points.length === 0) {
      ui.dialogSummary.textContent = `No readings in the last ${formatSpan(this.spanMs)}.`;
      return;
    }
    const values = points.map((point) => point.v);
    const mean = values.reduce((sum, value) => sum + value, 0) / values.length;
    ui.dialogSummary.textContent =
      `${points.length} readings in the last ${formatSpan(this.spanMs)}: ` +
      `min ${Math.min(...values).toFixed(1)} °C, max ${Math.max(...values).toFixed(1)} °C, mean ${mean.toFixed(1)} °C.`;
    ui.dialogChart.setAttribute("aria-label", `Temperature of ${this.unit?.unitId ?? ""} over the last ${formatSpan(this.spanMs)}`);
  },
};

/** @param {unknown} error */
function describe(error) {
  return error instanceof Error ? error.message : String(error);
}

main();
