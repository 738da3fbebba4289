// @ts-check
/**
 * The alert rules of one unit, in its dialog: the rules that cover it (its own, its site's, the
 * org's) and a form to create, change or delete them through the HTTP API. The server is the one
 * that validates: its `details` are shown next to the fields they name.
 */
import { ruleAppliesTo } from "./sensor-stream-client.js";

/** @typedef {import("./sensor-stream-client.js").AlertRule} AlertRule */
/** @typedef {import("./sensor-stream-client.js").AlertRuleBody} AlertRuleBody */
/** @typedef {AlertRule["severity"]} Severity */

const SVG_NS = "http://www.w3.org/2000/svg";

/** @type {Record<AlertRule["metric"], { label: string, unit: string }>} */
export const METRICS = {
  temperature: { label: "Temperature", unit: " °C" },
  humidity: { label: "Humidity", unit: " %" },
  battery: { label: "Battery", unit: " %" },
  signalStrength: { label: "Signal strength", unit: " dBm" },
  silence: { label: "No readings", unit: "" },
};

/**
 * Each severity's word, rank and icon: a stop sign, a warning triangle or a circle (no outline:
 * a circle), each with its mark.
 * @type {Record<Severity, { label: string, rank: number, shape: string, mark: string }>}
 */
export const SEVERITIES = {
  critical: { label: "Critical", rank: 3, shape: "7,1 17,1 23,7 23,17 17,23 7,23 1,17 1,7", mark: "M12 6v7M12 17.5v.5" },
  warning: { label: "Warning", rank: 2, shape: "12,1 23.5,22 0.5,22", mark: "M12 9v6M12 18.5v.5" },
  info: { label: "Info", rank: 1, shape: "", mark: "M12 11v6M12 7v.5" },
};

/**
 * A severity as a chip with a shape and a word: never colour alone.
 * @param {Severity} severity
 * @param {string} [text] instead of the severity's name
 */
export function severityBadge(severity, text) {
  const badge = document.createElement("span");
  badge.className = "severity-badge";
  badge.dataset.severity = severity;
  const icon = document.createElementNS(SVG_NS, "svg");
  icon.setAttribute("viewBox", "0 0 24 24");
  icon.setAttribute("aria-hidden", "true");
  icon.setAttribute("class", "severity-icon");
  const { shape, mark, label } = SEVERITIES[severity];
  const outline = document.createElementNS(SVG_NS, shape ? "polygon" : "circle");
  if (shape) outline.setAttribute("points", shape);
  else {
    outline.setAttribute("cx", "12");
    outline.setAttribute("cy", "12");
    outline.setAttribute("r", "11");
  }
  const inside = document.createElementNS(SVG_NS, "path");
  inside.setAttribute("d", mark);
  icon.append(outline, inside);
  const words = document.createElement("span");
  words.textContent = text ?? label;
  badge.append(icon, words);
  return badge;
}

/**
 * "Temperature above -15 °C for 10 s", "Humidity below 20 % or above 80 %", "No reading for 30 s".
 * @param {AlertRule} rule
 */
export function describeRule(rule) {
  const { label, unit } = METRICS[rule.metric];
  const lasting = rule.forSeconds > 0 ? ` for ${rule.forSeconds} s` : "";
  if (rule.metric === "silence") return `No reading for ${rule.maxSilenceSeconds} s${lasting}`;
  const bounds = [];
  if (rule.min !== undefined) bounds.push(`below ${rule.min}${unit}`);
  if (rule.max !== undefined) bounds.push(`above ${rule.max}${unit}`);
  return `${label} ${bounds.join(" or ")}${lasting}`;
}

/**
 * @param {AlertRule} rule
 * @param {string} unitId
 */
function scopeOf(rule, unitId) {
  if (rule.unitId !== undefined) return rule.unitId === unitId ? "this unit" : `unit ${rule.unitId}`;
  if (rule.siteId !== undefined) return `every unit at site ${rule.siteId}`;
  return "every unit of the organization";
}

/**
 * @typedef {object} RulesAccess
 * @property {boolean} canManage
 * @property {string} [reason] why not (or why the rules are not known)
 */

/**
 * What the editor needs from the page.
 * @typedef {object} RuleStore
 * @property {() => AlertRule[] | null} rules the rules the token sees; null until loaded
 * @property {() => RulesAccess} access
 * @property {(ruleId: string, body: AlertRuleBody) => Promise<AlertRule>} save
 * @property {(ruleId: string) => Promise<void>} remove
 */

const FIELDS = /** @type {const} */ (["name", "metric", "min", "max", "maxSilenceSeconds", "forSeconds", "severity"]);

/** @param {string} id */
function byId(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing from the page`);
  return found;
}

export class RuleEditor {
  #store;
  /** @type {{ unitId: string, siteId: string | null } | null} */
  #unit = null;
  /** @type {AlertRule | null} the rule being edited; null for a new one */
  #editing = null;
  #newRuleId = "";
  #busy = false;
  #ui = {
    status: byId("rules-status"),
    list: byId("rules-list"),
    add: /** @type {HTMLButtonElement} */ (byId("rule-new")),
    form: /** @type {HTMLFormElement} */ (byId("rule-form")),
    title: byId("rule-form-title"),
    scope: byId("rule-scope"),
    formError: byId("rule-form-error"),
    save: /** @type {HTMLButtonElement} */ (byId("rule-save")),
    cancel: /** @type {HTMLButtonElement} */ (byId("rule-cancel")),
    name: /** @type {HTMLInputElement} */ (byId("rule-name")),
    metric: /** @type {HTMLSelectElement} */ (byId("rule-metric")),
    min: /** @type {HTMLInputElement} */ (byId("rule-min")),
    max: /** @type {HTMLInputElement} */ (byId("rule-max")),
    maxSilenceSeconds: /** @type {HTMLInputElement} */ (byId("rule-silence")),
    forSeconds: /** @type {HTMLInputElement} */ (byId("rule-for")),
    severity: /** @type {HTMLSelectElement} */ (byId("rule-severity")),
  };

  /** @param {RuleStore} store */
  constructor(store) {
    this.#store = store;
    this.#ui.add.addEventListener("click", () => this.#edit(null));
    this.#ui.cancel.addEventListener("click", () => this.#closeForm(this.#ui.add));
    this.#ui.metric.addEventListener("change", () => this.#showMetricFields());
    this.#ui.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#submit();
    });
    // Escape in the form closes the form, not the whole dialog.
    this.#ui.form.addEventListener("keydown", (event) => {
      if (event.key !== "Escape") return;
      event.preventDefault();
      this.#closeForm(this.#ui.add);
    });
  }

  /** @param {{ unitId: string, siteId: string | null }} unit */
  open(unit) {
    this.#unit = unit;
    this.#ui.form.hidden = true;
    this.#ui.status.textContent = "";
    this.refresh();
  }

  close() {
    this.#unit = null;
    this.#ui.form.hidden = true;
  }

  /** Shows the unit's rules as they are now (loaded, changed elsewhere, access known). */
  refresh() {
    const unit = this.#unit;
    if (!unit) return;
    const rules = this.#store.rules();
    const access = this.#store.access();
    this.#ui.add.disabled = !access.canManage || this.#busy;
    this.#ui.add.title = access.canManage ? "" : access.reason ?? "";
    this.#ui.save.disabled = !access.canManage || this.#busy;
    if (!access.canManage && access.reason) this.#ui.status.textContent = access.reason;
    const mine = (rules ?? []).filter((rule) => ruleAppliesTo(rule, unit.unitId, unit.siteId));
    mine.sort((a, b) => SEVERITIES[b.severity].rank - SEVERITIES[a.severity].rank || a.ruleId.localeCompare(b.ruleId));
    const items = mine.map((rule) => this.#item(rule, access));
    if (rules === null) this.#ui.list.replaceChildren(this.#note("Loading the rules…"));
    else this.#ui.list.replaceChildren(...(items.length > 0 ? items : [this.#note("No rule covers this unit yet.")]));
  }

  /** @param {string} text */
  #note(text) {
    const item = document.createElement("li");
    item.className = "rule-note";
    item.textContent = text;
    return item;
  }

  /**
   * @param {AlertRule} rule
   * @param {RulesAccess} access
   */
  #item(rule, access) {
    const item = document.createElement("li");
    item.className = "rule-item";
    item.dataset.ruleId = rule.ruleId;
    const text = document.createElement("div");
    text.className = "rule-text";
    const name = document.createElement("strong");
    name.textContent = rule.name ?? rule.ruleId;
    const what = document.createElement("span");
    what.className = "rule-what";
    what.textContent = `${describeRule(rule)} · ${scopeOf(rule, this.#unit?.unitId ?? "")}`;
    text.append(name, severityBadge(rule.severity), what);
    const buttons = document.createElement("div");
    buttons.className = "rule-buttons";
    const label = rule.name ?? rule.ruleId;
    const edit = document.createElement("button");
    edit.type = "button";
    edit.className = "ghost";
    edit.textContent = "Edit";
    edit.setAttribute("aria-label", `Edit the rule ${label}`);
    edit.addEventListener("click", () => this.#edit(rule));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "ghost danger";
    remove.textContent = "Delete";
    remove.setAttribute("aria-label", `Delete the rule ${label}`);
    remove.addEventListener("click", () => this.#delete(rule, remove));
    for (const button of [edit, remove]) {
      button.disabled = !access.canManage || this.#busy;
      button.title = access.canManage ? "" : access.reason ?? "";
    }
    buttons.append(edit, remove);
    item.append(text, buttons);
    return item;
  }

  /** @param {AlertRule | null} rule null: a new rule for this unit */
  #edit(rule) {
    const unit = this.#unit;
    if (!unit) return;
    this.#editing = rule;
    // A new rule's id is chosen once, so a repeated Save replaces rather than duplicates it.
    this.#newRuleId = `${unit.unitId.slice(0, 48)}.rule-${Math.random().toString(36).slice(2, 8)}`;
    const ui = this.#ui;
    ui.title.textContent = rule ? `Edit “${rule.name ?? rule.ruleId}”` : "New rule";
    ui.scope.textContent = `Applies to ${rule ? scopeOf(rule, unit.unitId) : `this unit (${unit.unitId})`}.`;
    ui.name.value = rule?.name ?? "";
    ui.metric.value = rule?.metric ?? "temperature";
    ui.min.value = rule?.min === undefined ? "" : String(rule.min);
    ui.max.value = rule?.max === undefined ? "" : String(rule.max);
    ui.maxSilenceSeconds.value = String(rule?.maxSilenceSeconds ?? 300);
    ui.forSeconds.value = String(rule?.forSeconds ?? 0);
    ui.severity.value = rule?.severity ?? "warning";
    this.#clearErrors();
    this.#showMetricFields();
    ui.form.hidden = false;
    ui.name.focus();
  }

  /** @param {HTMLElement} focus where keyboard focus goes back to */
  #closeForm(focus) {
    this.#ui.form.hidden = true;
    this.#editing = null;
    focus.focus();
  }

  #showMetricFields() {
    const silence = this.#ui.metric.value === "silence";
    for (const field of this.#ui.form.querySelectorAll("[data-for]")) {
      /** @type {HTMLElement} */ (field).hidden = (/** @type {HTMLElement} */ (field).dataset.for === "silence") !== silence;
    }
  }

  /** @returns {AlertRuleBody | null} null when a number field holds something that is not a number */
  #body() {
    const ui = this.#ui;
    const unit = /** @type {{ unitId: string }} */ (this.#unit);
    const metric = /** @type {AlertRuleBody["metric"]} */ (ui.metric.value);
    /** @type {AlertRuleBody} */
    const body = { metric, severity: /** @type {AlertRuleBody["severity"]} */ (ui.severity.value) };
    const name = ui.name.value.trim();
    if (name) body.name = name;
    const numbers = metric === "silence" ? /** @type {const} */ (["maxSilenceSeconds", "forSeconds"]) : /** @type {const} */ (["min", "max", "forSeconds"]);
    let readable = true;
    for (const field of numbers) {
      const input = ui[field];
      // Ranges are the server's to judge; only what the browser cannot read as a number stops here.
      if (input.validity.badInput) {
        this.#fieldError(field, "Enter a number.");
        readable = false;
      } else if (input.value !== "") body[field] = input.valueAsNumber;
    }
    const scope = this.#editing ?? { unitId: unit.unitId };
    if (scope.unitId !== undefined) body.unitId = scope.unitId;
    else if ("siteId" in scope && scope.siteId !== undefined) body.siteId = scope.siteId;
    return readable ? body : null;
  }

  async #submit() {
    if (this.#busy || !this.#unit) return;
    this.#clearErrors();
    const body = this.#body();
    if (!body) return;
    const ruleId = this.#editing?.ruleId ?? this.#newRuleId;
    this.#setBusy(true);
    try {
      const stored = await this.#store.save(ruleId, body);
      this.#ui.form.hidden = true;
      this.#editing = null;
      this.#ui.status.textContent = `Saved the rule “${stored.name ?? stored.ruleId}”.`;
    } catch (error) {
      this.#showError(error);
      return;
    } finally {
      this.#setBusy(false);
    }
    this.refresh();
    const edit = this.#ui.list.querySelector(`[data-rule-id="${CSS.escape(ruleId)}"] button`);
    /** @type {HTMLElement} */ (edit ?? this.#ui.add).focus();
  }

  /**
   * @param {AlertRule} rule
   * @param {HTMLButtonElement} button
   */
  async #delete(rule, button) {
    const label = rule.name ?? rule.ruleId;
    if (!window.confirm(`Delete the rule “${label}”? Its active alerts resolve.`)) return;
    this.#setBusy(true);
    button.textContent = "Deleting…";
    try {
      await this.#store.remove(rule.ruleId);
      this.#ui.status.textContent = `Deleted the rule “${label}”.`;
      if (this.#editing?.ruleId === rule.ruleId) this.#ui.form.hidden = true;
    } catch (error) {
      this.#ui.status.textContent = `Could not delete “${label}”: ${explain(error)}`;
    } finally {
      this.#setBusy(false);
    }
    this.refresh();
    this.#ui.add.focus();
  }

  /** @param {boolean} busy */
  #setBusy(busy) {
    this.#busy = busy;
    this.#ui.save.textContent = busy ? "Saving…" : "Save rule";
    this.refresh();
  }

  /** @param {unknown} error */
  #showError(error) {
    const failure = /** @type {{ code?: string, details?: Array<Record<string, unknown>> }} */ (error);
    /** @type {string[]} */
    const general = [];
    for (const detail of failure.details ?? []) {
      const field = String(detail.field ?? "");
      const message = String(detail.message ?? "").replace(/^Value error, /, "");
      if (/** @type {readonly string[]} */ (FIELDS).includes(field)) this.#fieldError(/** @type {typeof FIELDS[number]} */ (field), message);
      else general.push(message);
    }
    const firstInvalid = this.#ui.form.querySelector("[aria-invalid='true']");
    this.#ui.formError.textContent = general.length > 0 ? general.join(" ") : firstInvalid ? "Check the marked fields." : explain(error);
    /** @type {HTMLElement | null} */ (firstInvalid)?.focus();
  }

  /**
   * @param {typeof FIELDS[number]} field
   * @param {string} message
   */
  #fieldError(field, message) {
    this.#ui[field].setAttribute("aria-invalid", "true");
    byId(`rule-error-${field}`).textContent = message;
  }

  #clearErrors() {
    for (const field of FIELDS) {
      this.#ui[field].removeAttribute("aria-invalid");
      byId(`rule-error-${field}`).textContent = "";
    }
    this.#ui.formError.textContent = "";
  }
}

/**
 * What went wrong, in the user's terms.
 * @param {unknown} error
 */
export function explain(error) {
  const failure = /** @type {{ code?: string, status?: number, message?: string }} */ (error);
  const said = failure.message ?? String(error);
  const status = failure.status ? ` (${failure.status} ${failure.code})` : "";
  if (failure.code === "unauthorized") return `the rules API does not accept your token${status}: ${said}`;
  if (failure.code === "forbidden") return `your access may not manage this rule${status}: ${said}`;
  return `${said}${status}`;
}
