// A strict TypeScript consumer of the client package, as an application would import it:
// `make test` (tests/unit/test_web_package.py) compiles it with tsc --strict against the
// generated sensor-stream-client.d.ts. It fails to compile when an event loses its detail
// type or an error code is added to the union without a case here.
import {
  type AlertRule,
  type AlertRuleBody,
  AlertRulesClient,
  type AlertTriggeredMessage,
  type ErrorCode,
  type Reading,
  ruleAppliesTo,
  SensorStreamClient,
  SensorStreamError,
  type StatusDetail,
  type UnitInfo,
} from "@sensor-stream/client";

const client = new SensorStreamClient({
  url: "wss://example.execute-api.eu-west-1.amazonaws.com/prod",
  token: async () => "header.payload.signature",
  initialResumeMs: 5 * 60_000,
});

const statuses: StatusDetail["status"][] = [];
client.addEventListener("status", (event) => {
  statuses.push(event.detail.status);
  if (event.detail.retryAt !== undefined) console.log(Math.ceil((event.detail.retryAt - Date.now()) / 1000));
});
client.addEventListener("readings", (event) => {
  const temperatures: number[] = event.detail.readings.map((reading: Reading) => reading.temperature);
  const replayed: boolean = event.detail.replay;
  console.log(temperatures, replayed);
});
client.addEventListener("alert", (event) => {
  const message = event.detail;
  if (message.type === "alert:triggered") console.log(message.severity, message.message, message.triggeredAt);
  else console.log(message.alertId, message.resolvedAt);
});
client.addEventListener("subscription", (event) => console.log(event.detail.scope, event.detail.unitIds));
client.addEventListener("error", (event) => console.log(describe(event.detail.code), event.detail.message));
// Other event types still go through EventTarget's own signature.
client.addEventListener("something-else", (event: Event) => console.log(event.type));

function describe(code: ErrorCode): string {
  switch (code) {
    case "malformed_json":
    case "unknown_action":
    case "validation_error":
    case "bad_request":
    case "payload_too_large":
    case "malformed_message":
      return "a bug: the client or server sent something invalid";
    case "limit_exceeded":
    case "throttled":
      return "too much at once";
    case "unauthorized":
    case "token_expired":
    case "forbidden":
      return "sign in again";
    case "not_found":
    case "conflict":
      return "check the ids";
    case "unavailable":
    case "timeout":
    case "not_connected":
    case "disconnected":
    case "hello_failed":
    case "resubscribe_failed":
    case "refresh_failed":
      return "try again";
    case "command_failed":
    case "command_timeout":
      return "the device did not do it";
    default: {
      const unhandled: never = code;
      return unhandled;
    }
  }
}

async function main(): Promise<void> {
  client.connect();
  const history = await client.getHistory("unit-1", { since: new Date(Date.now() - 60_000).toISOString() });
  const newest: Reading | undefined = history.readings.at(-1);
  const more: boolean = history.more;
  const latest: Reading | null = await client.getLatest("unit-1");
  const serverTime: string = await client.ping();
  const offset: number = client.clockOffsetMs;
  const lastContact: number | undefined = client.lastContactAt;
  console.log(newest, more, latest, serverTime, offset, lastContact, client.serverNow());
  try {
    const ack = await client.sendCommand("gw-01", "setReportingInterval", { seconds: 5 });
    const status: "ok" | "error" = ack.status;
    console.log(status, ack.detail);
  } catch (error) {
    if (error instanceof SensorStreamError) console.log(describe(error.code), error.commandId);
  }
  const active: AlertTriggeredMessage[] = await client.getAlerts();
  const units: UnitInfo[] = await client.listUnits();
  const quiet: (string | null)[] = units.map((unit) => unit.lastReading?.receivedAt ?? unit.lastSeenAt);
  console.log(active.map((alert) => alert.alertType), quiet);

  const rules = new AlertRulesClient({ httpUrl: "https://api.example.com", token: () => "header.payload.signature" });
  const body: AlertRuleBody = { metric: "silence", maxSilenceSeconds: 600, unitId: "unit-1", severity: "warning" };
  try {
    const stored: AlertRule = await rules.put("unit-1-quiet", body);
    const forSeconds: number = stored.forSeconds;
    const mine: AlertRule[] = (await rules.list()).filter((rule) => ruleAppliesTo(rule, "unit-1", null));
    console.log(forSeconds, mine.length);
    await rules.delete(stored.ruleId);
  } catch (error) {
    if (error instanceof SensorStreamError) {
      const status: number | undefined = error.status;
      console.log(describe(error.code), status, error.details?.map((detail) => detail["field"]));
    }
  }
  client.retryNow();
  client.close();
}

void main();
