// @ts-check
/**
 * The live dashboard: one row per unit with its newest reading, a temperature sparkline,
 * a stale marker and a command button. Everything it knows comes through SensorStreamClient.
 */
import { SensorStreamClient, decodeTokenClaims } from "./sensor-stream-client.js";

/** @typedef {import("./sensor-stream-client.js").Reading} Reading */
/** @typedef {import("./sensor-stream-client.js").StatusDetail} StatusDetail */
/** @typedef {import("./sensor-stream-client.js").ReadingsDetail} ReadingsDetail */
/** @typedef {import("./sensor-stream-client.js").Subscription} Subscription */
/** @typedef {import("./sensor-stream-client.js").ErrorDetail} ErrorDetail */

const TOKEN_STORAGE_KEY = "sensor-stream.token";
const DEFAULT_WEBSOCKET_URL = "ws://127.0.0.1:3001";
const STALE_AFTER_MS = 10_000;
const HISTORY_MS = 5 * 60_000;
const MAX_HISTORY_POINTS = 600;
const NOTICE_LIFETIME_MS = 20_000;
const MAX_NOTICES = 5;
// Command names are up to the devices; the simulated ones answer this by blinking their LED.
const COMMAND = "identify";

/**
 * @typedef {object} UnitView
 * @property {Reading} latest
 * @property {Array<{ t: number, v: number }>} history temperature by recordedAt (epoch ms)
 * @property {HTMLTableRowElement} row
 * @property {Record<"temperature" | "sparkline" | "humidity" | "battery" | "signal" | "lastSeen" | "device", HTMLTableCellElement>} cells
 * @property {HTMLButtonElement} commandButton
 * @property {HTMLElement} commandState
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
  tokenForm: /** @type {HTMLFormElement} */ (element("token-form")),
  tokenInput: /** @type {HTMLInputElement} */ (element("token-input")),
  filterForm: /** @type {HTMLFormElement} */ (element("filter-form")),
  unitsInput: /** @type {HTMLInputElement} */ (element("units-input")),
  subscriptionText: element("subscription-text"),
  notices: element("notices"),
  body: element("units-body"),
  empty: element("empty"),
  endpoint: element("endpoint"),
  connectionId: element("connection-id"),
  readingCount: element("reading-count"),
};

/** @type {Map<string, UnitView>} */
const units = new Map();
/** @type {SensorStreamClient | null} */
let client = null;
let websocketUrl = DEFAULT_WEBSOCKET_URL;
// Server clock minus browser clock, so "last seen" and staleness use the server's time.
let clockOffsetMs = 0;
let readingCount = 0;

// --- Start-up -------------------------------------------------------------------------------

async function main() {
  websocketUrl = await loadWebsocketUrl();
  ui.endpoint.textContent = websocketUrl;
  const token = takeToken();
  ui.tokenInput.value = token;
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
  setInterval(refreshAges, 1000);
  if (token) start(token);
  else {
    showStatus({ status: "offline", reason: "no token" });
    ui.tokenInput.focus();
  }
}

/** `config.json` next to the page names the WebSocket endpoint (the local stack writes it). */
async function loadWebsocketUrl() {
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (response.ok) {
      const config = await response.json();
      if (typeof config.websocketUrl === "string" && config.websocketUrl) return config.websocketUrl;
    }
  } catch {
    // No config next to the page: fall back to the local stack's default port.
  }
  return DEFAULT_WEBSOCKET_URL;
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

/** @param {string} token */
function start(token) {
  client?.close();
  clearUnits();
  const claims = decodeTokenClaims(token);
  ui.identity.hidden = !claims;
  ui.identity.textContent = claims ? `${claims.org ?? "?"} · ${claims.sub ?? "?"}` : "";

  const current = new SensorStreamClient({ url: websocketUrl, token });
  client = current;
  current.addEventListener("status", (event) => {
    if (client !== current) return;
    const detail = /** @type {CustomEvent<StatusDetail>} */ (event).detail;
    showStatus(detail);
    if (detail.status === "connected") onConnected(current);
  });
  current.addEventListener("readings", (event) => {
    if (client === current) showReadings(/** @type {CustomEvent<ReadingsDetail>} */ (event).detail);
  });
  current.addEventListener("subscription", (event) => {
    if (client === current) showSubscription(/** @type {CustomEvent<Subscription>} */ (event).detail);
  });
  current.addEventListener("error", (event) => {
    if (client !== current) return;
    const detail = /** @type {CustomEvent<ErrorDetail>} */ (event).detail;
    notify(`${detail.message} (${detail.code})`);
  });
  current.connect();
}

/** @param {SensorStreamClient} current */
function onConnected(current) {
  ui.connectionId.textContent = current.connectionId ?? "–";
  // Fill the rows of a filter at once instead of waiting for the next readings.
  const selection = current.subscription;
  if (selection?.scope === "selected") loadLatest(selection.unitIds);
}

// --- Subscription ---------------------------------------------------------------------------

/** @param {string} text */
function parseUnitList(text) {
  return [...new Set(text.split(/[\s,]+/).filter(Boolean))];
}

/**
 * Make the subscription exactly these units (all units when empty).
 * @param {string[]} wanted
 */
async function applyFilter(wanted) {
  if (!client) {
    notify("Connect with a token first.");
    return;
  }
  const current = client.subscription;
  try {
    if (wanted.length === 0) {
      await client.subscribe({ scope: "org" });
    } else if (!current || current.scope === "org") {
      await client.subscribe({ unitIds: wanted }); // narrows the whole org to exactly these
    } else {
      const added = wanted.filter((unitId) => !current.unitIds.includes(unitId));
      const removed = current.unitIds.filter((unitId) => !wanted.includes(unitId));
      if (added.length > 0) await client.subscribe({ unitIds: added });
      if (removed.length > 0 || current.siteIds.length > 0) {
        await client.unsubscribe({ unitIds: removed, siteIds: current.siteIds });
      }
    }
  } catch (error) {
    notify(`Could not change the subscription: ${describe(error)}`);
    return;
  }
  for (const unitId of [...units.keys()]) {
    if (wanted.length > 0 && !wanted.includes(unitId)) removeUnit(unitId);
  }
  loadLatest(wanted);
}

/** @param {string[]} unitIds */
async function loadLatest(unitIds) {
  const active = client;
  await Promise.all(
    unitIds.map(async (unitId) => {
      try {
        const reading = await active?.getLatest(unitId);
        if (reading && client === active) showReading(reading);
      } catch (error) {
        notify(`No latest reading for ${unitId}: ${describe(error)}`);
      }
    }),
  );
  updateEmptyState();
}

/** @param {Subscription} subscription */
function showSubscription(subscription) {
  if (subscription.scope === "org") {
    ui.subscriptionText.textContent = "Receiving every unit of the organization.";
    return;
  }
  const parts = [];
  if (subscription.unitIds.length > 0) parts.push(`units ${subscription.unitIds.join(", ")}`);
  if (subscription.siteIds.length > 0) parts.push(`sites ${subscription.siteIds.join(", ")}`);
  ui.subscriptionText.textContent = parts.length > 0 ? `Receiving ${parts.join(" and ")}.` : "Receiving nothing.";
}

// --- Status and notices ---------------------------------------------------------------------

const EMPTY_TEXTS = {
  connecting: "Connecting…",
  connected: "Waiting for readings…",
  reconnecting: "Reconnecting…",
  offline: "Not connected.",
  unauthorized: "Connect with a valid token to see readings.",
};

const STATUS_LABELS = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  unauthorized: "Unauthorized",
};

/** @param {StatusDetail} detail */
function showStatus(detail) {
  ui.status.dataset.status = detail.status;
  let label = STATUS_LABELS[detail.status];
  if (detail.status === "reconnecting" && detail.retryInMs !== undefined) {
    label = `Reconnecting in ${Math.max(1, Math.round(detail.retryInMs / 1000))} s`;
  }
  ui.statusText.textContent = label;
  ui.empty.textContent = EMPTY_TEXTS[detail.status];
  ui.status.title = detail.reason ?? "";
  if (detail.status !== "connected") ui.connectionId.textContent = "–";
  if (detail.status === "unauthorized") {
    notify(`Not authorized: ${detail.reason ?? "the server refused the token"}. Paste a valid token.`);
    ui.tokenInput.focus();
  }
}

/** @param {string} text */
function notify(text) {
  const notice = document.createElement("div");
  notice.className = "notice";
  notice.setAttribute("role", "alert");
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

// --- Readings -------------------------------------------------------------------------------

/** @param {ReadingsDetail} detail */
function showReadings(detail) {
  clockOffsetMs = Date.parse(detail.serverTime) - Date.now();
  for (const reading of detail.readings) showReading(reading);
  readingCount += detail.readings.length;
  showReadingCount();
  updateEmptyState();
}

/** @param {Reading} reading */
function showReading(reading) {
  const view = units.get(reading.unitId) ?? addUnit(reading);
  const recordedMs = Date.parse(reading.recordedAt);
  addToHistory(view.history, recordedMs, reading.temperature);
  // Replayed or late readings fill the sparkline but never replace a newer value.
  if (recordedMs >= Date.parse(view.latest.recordedAt)) view.latest = reading;
  renderUnit(view);
}

/**
 * @param {Array<{ t: number, v: number }>} history
 * @param {number} t
 * @param {number} v
 */
function addToHistory(history, t, v) {
  let index = history.length;
  while (index > 0 && history[index - 1].t > t) index -= 1;
  history.splice(index, 0, { t, v });
  const oldest = serverNow() - HISTORY_MS;
  while (history.length > MAX_HISTORY_POINTS || (history.length > 1 && history[0].t < oldest)) history.shift();
}

/** @param {Reading} reading */
function addUnit(reading) {
  const row = document.createElement("tr");
  row.dataset.unitId = reading.unitId;
  const cell = (/** @type {string} */ className) => {
    const td = document.createElement("td");
    td.className = className;
    return td;
  };
  const name = cell("unit");
  const unitName = document.createElement("span");
  unitName.className = "unit-name";
  unitName.textContent = reading.unitId;
  name.append(unitName);
  if (reading.siteId) {
    const site = document.createElement("span");
    site.className = "site";
    site.textContent = reading.siteId;
    name.append(site);
  }
  const cells = {
    temperature: cell("temperature num"),
    sparkline: cell("sparkline"),
    humidity: cell("humidity num"),
    battery: cell("battery"),
    signal: cell("signal"),
    lastSeen: cell("last-seen"),
    device: cell("device"),
  };
  const commandCell = cell("command");
  const commandGroup = document.createElement("div");
  commandGroup.className = "inline-group";
  const commandButton = document.createElement("button");
  commandButton.type = "button";
  commandButton.className = "command-button";
  commandButton.textContent = "Identify";
  const commandState = document.createElement("span");
  commandState.className = "command-state";
  commandGroup.append(commandButton, commandState);
  commandCell.append(commandGroup);
  row.append(name, ...Object.values(cells), commandCell);

  /** @type {UnitView} */
  const view = { latest: reading, history: [], row, cells, commandButton, commandState };
  commandButton.addEventListener("click", () => sendCommand(view));
  units.set(reading.unitId, view);

  const following = [...units.keys()].sort().find((unitId) => unitId > reading.unitId);
  ui.body.insertBefore(row, following ? (units.get(following)?.row ?? null) : null);
  return view;
}

/** @param {string} unitId */
function removeUnit(unitId) {
  units.get(unitId)?.row.remove();
  units.delete(unitId);
}

function clearUnits() {
  for (const unitId of [...units.keys()]) removeUnit(unitId);
  readingCount = 0;
  showReadingCount();
  updateEmptyState();
}

function showReadingCount() {
  ui.readingCount.textContent = readingCount.toLocaleString();
  ui.readingCount.dataset.count = String(readingCount);
}

function updateEmptyState() {
  ui.empty.hidden = units.size > 0;
}

/** @param {UnitView} view */
function renderUnit(view) {
  const reading = view.latest;
  view.cells.temperature.textContent = `${reading.temperature.toFixed(1)} °C`;
  view.cells.humidity.textContent = reading.humidity === null ? "–" : `${Math.round(reading.humidity)} %`;
  renderBattery(view.cells.battery, reading.battery);
  renderSignal(view.cells.signal, reading.signalStrength);
  view.cells.device.textContent = reading.deviceId;
  view.commandButton.title = `Send "${COMMAND}" to device ${reading.deviceId}`;
  view.cells.sparkline.replaceChildren(sparkline(view.history));
  renderAge(view);
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
  const fill = document.createElement("span");
  fill.style.width = `${Math.max(0, Math.min(100, battery))}%`;
  meter.append(fill);
  const label = document.createElement("span");
  label.textContent = `${Math.round(battery)} %`;
  const group = document.createElement("span");
  group.className = "inline-group";
  group.append(meter, label);
  cell.dataset.level = battery < 20 ? "low" : battery < 50 ? "medium" : "high";
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

function serverNow() {
  return Date.now() + clockOffsetMs;
}

/** @param {UnitView} view */
function renderAge(view) {
  const receivedMs = Date.parse(view.latest.receivedAt);
  const ageMs = Math.max(0, serverNow() - receivedMs);
  const stale = ageMs > STALE_AFTER_MS;
  view.row.classList.toggle("stale", stale);
  const age = document.createElement("span");
  age.textContent = formatAge(ageMs);
  view.cells.lastSeen.title = new Date(receivedMs).toLocaleString();
  if (stale) {
    const marker = document.createElement("span");
    marker.className = "stale-marker";
    marker.textContent = "stale";
    view.cells.lastSeen.replaceChildren(age, marker);
  } else {
    view.cells.lastSeen.replaceChildren(age);
  }
}

function refreshAges() {
  for (const view of units.values()) renderAge(view);
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

// --- Sparkline ------------------------------------------------------------------------------

const SVG_NS = "http://www.w3.org/2000/svg";
const SPARK_WIDTH = 140;
const SPARK_HEIGHT = 32;
const SPARK_PAD = 3;
// A young history spreads over the width, but a few seconds never fill it.
const SPARK_MIN_SPAN_MS = 20_000;

/** @param {Array<{ t: number, v: number }>} history */
function sparkline(history) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}`);
  svg.setAttribute("width", String(SPARK_WIDTH));
  svg.setAttribute("height", String(SPARK_HEIGHT));
  svg.setAttribute("role", "img");
  if (history.length === 0) return svg;

  const values = history.map((point) => point.v);
  const low = Math.min(...values);
  const high = Math.max(...values);
  // At least half a degree of range, so sensor noise does not look like a storm.
  const span = Math.max(high - low, 0.5);
  const middle = (high + low) / 2;
  const end = Math.max(serverNow(), history[history.length - 1].t);
  const spanMs = Math.min(HISTORY_MS, Math.max(SPARK_MIN_SPAN_MS, end - history[0].t));
  const x = (/** @type {number} */ t) => SPARK_PAD + ((t - (end - spanMs)) / spanMs) * (SPARK_WIDTH - 2 * SPARK_PAD);
  const y = (/** @type {number} */ v) => SPARK_HEIGHT / 2 - ((v - middle) / span) * (SPARK_HEIGHT - 2 * SPARK_PAD);
  const points = history.map((point) => `${x(point.t).toFixed(1)},${y(point.v).toFixed(1)}`);

  const title = document.createElementNS(SVG_NS, "title");
  title.textContent = `${low.toFixed(1)} – ${high.toFixed(1)} °C over the last ${formatSpan(spanMs)}`;
  const area = document.createElementNS(SVG_NS, "polygon");
  area.setAttribute("class", "area");
  const firstX = x(history[0].t).toFixed(1);
  const lastX = x(history[history.length - 1].t).toFixed(1);
  area.setAttribute("points", `${firstX},${SPARK_HEIGHT} ${points.join(" ")} ${lastX},${SPARK_HEIGHT}`);
  const line = document.createElementNS(SVG_NS, "polyline");
  line.setAttribute("class", "line");
  line.setAttribute("points", points.join(" "));
  const last = history[history.length - 1];
  const dot = document.createElementNS(SVG_NS, "circle");
  dot.setAttribute("class", "dot");
  dot.setAttribute("cx", x(last.t).toFixed(1));
  dot.setAttribute("cy", y(last.v).toFixed(1));
  dot.setAttribute("r", "2.5");
  svg.append(title, area, line, dot);
  return svg;
}

/** @param {number} ms */
function formatSpan(ms) {
  return ms >= 90_000 ? `${Math.round(ms / 60_000)} minutes` : `${Math.round(ms / 1000)} seconds`;
}

// --- Commands -------------------------------------------------------------------------------

/** @param {UnitView} view */
async function sendCommand(view) {
  if (!client) return;
  const deviceId = view.latest.deviceId;
  const setState = (/** @type {string} */ state, /** @type {string} */ text, detail = "") => {
    view.commandState.dataset.state = state;
    view.commandState.textContent = text;
    view.commandState.title = detail;
  };
  view.commandButton.disabled = true;
  setState("sending", "sending…");
  try {
    const ack = await client.sendCommand(deviceId, COMMAND, {}, {
      onAccepted: () => setState("accepted", "accepted"),
    });
    setState("ack", "ack ✓", ack.detail);
  } catch (error) {
    const code = /** @type {{ code?: string }} */ (error).code;
    if (code === "command_timeout" || code === "timeout") setState("timeout", "timed out", describe(error));
    else setState("error", "failed", describe(error));
    notify(`Command "${COMMAND}" to ${deviceId}: ${describe(error)}`);
  } finally {
    view.commandButton.disabled = false;
  }
}

/** @param {unknown} error */
function describe(error) {
  return error instanceof Error ? error.message : String(error);
}

main();
