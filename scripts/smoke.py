"""``make smoke STAGE=prod``: check a deployed stage end to end, as its users and devices
see it, with the AWS CLI's credentials (boto3).

1. A browser connects to the WebSocket API with a token of a throw-away org.
2. A test device (a temporary IoT thing and certificate) publishes a reading over MQTT;
   the browser must receive it.
3. A gateway posts a reading to ``POST /readings``; the browser must receive it.
4. The stage's dashboard: its own metrics (readings stored, flush ticks, end-to-end lag)
   must show data.
5. An alarm is set to ALARM with ``set-alarm-state``: the notification must reach the
   alarm topic (read through a temporary SQS subscription); the alarm is set back to OK.

Everything it creates (Cognito user, thing, certificate, queue, subscription) is removed
at the end; the two readings stay in the table until their TTL. It prints one line per
check and exits non-zero when one fails.

Steps 1-3 run against any stack: ``--websocket-url``, ``--http-url``, ``--mqtt-url`` and
``--token`` replace what would come from AWS (the local stack's test does exactly that,
tests/e2e/test_smoke.py); steps 4-5 need CloudWatch and SNS and are skipped, saying so,
without ``--stage``.
"""

from __future__ import annotations

import argparse
import json
import queue
import secrets
import ssl
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

SUBPROTOCOL = "sensor-stream.v1"
SMOKE_UNIT = "smoke-unit"
DELIVERY_TIMEOUT_SECONDS = 30.0
# CloudWatch shows EMF metrics a minute or two after they were logged.
METRICS_TIMEOUT_SECONDS = 300.0
ALARM_TIMEOUT_SECONDS = 120.0
DEVICE_CONNECT_ATTEMPTS = 4
# The alarm whose notification path is exercised: no real condition can set it back to
# ALARM while the smoke runs, and it re-evaluates to OK on its own.
SMOKE_ALARM = "quarantineburst"


@dataclass
class Check:
    name: str
    status: str  # PASS, FAIL or SKIP
    detail: str

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.detail}"


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str) -> None:
        check = Check(name, status, detail)
        self.checks.append(check)
        print(check.line(), flush=True)

    def run(self, name: str, step: Callable[[], str]) -> bool:
        try:
            self.add(name, "PASS", step())
        except Exception as error:  # a failed check is reported, the others still run
            self.add(name, "FAIL", f"{type(error).__name__}: {error}")
            return False
        return True

    @property
    def failed(self) -> bool:
        return any(check.status == "FAIL" for check in self.checks)


def iso_now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def reading(reading_id: str) -> dict[str, Any]:
    return {"id": reading_id, "unitId": SMOKE_UNIT, "temperature": 21.5, "recordedAt": iso_now()}


# --- the browser ---------------------------------------------------------------------------


class Browser:
    """A WebSocket client as the dashboard uses it (token in the subprotocols)."""

    def __init__(self, url: str, token: str) -> None:
        from websockets.sync.client import connect
        from websockets.typing import Subprotocol

        offer = [Subprotocol(SUBPROTOCOL), Subprotocol(f"bearer.{token}")]
        self.connection = connect(url, subprotocols=offer, open_timeout=30)
        self.received: list[dict[str, Any]] = []

    def close(self) -> None:
        self.connection.close()

    def send(self, document: dict[str, Any]) -> None:
        self.connection.send(json.dumps(document))

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        for message in self.received:
            if predicate(message):
                return message
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                message = json.loads(self.connection.recv(timeout=remaining))
            except TimeoutError:
                break
            self.received.append(message)
            if predicate(message):
                return message
        raise TimeoutError(
            f"nothing matching within {timeout:.0f} s; got {[m.get('type') for m in self.received]}"
        )

    def wait_for_reading(self, reading_id: str, timeout: float = DELIVERY_TIMEOUT_SECONDS) -> float:
        """Seconds until the reading arrived."""
        started = time.monotonic()
        self.wait_for(
            lambda message: (
                message.get("type") == "sensor:readings:batch"
                and any(r.get("id") == reading_id for batch in message["batches"] for r in batch["readings"])
            ),
            timeout,
        )
        return time.monotonic() - started


# --- the device -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceIdentity:
    """MQTT credentials: none on a local broker, a certificate for AWS IoT (mqtts://)."""

    client_id: str
    certificate_file: str | None = None
    private_key_file: str | None = None


def publish_as_device(mqtt_url: str, identity: DeviceIdentity, topic: str, payload: dict[str, Any]) -> None:
    from paho.mqtt.client import CallbackAPIVersion, Client

    address = urlsplit(mqtt_url)
    secure = address.scheme in ("mqtts", "ssl")
    client = Client(CallbackAPIVersion.VERSION2, client_id=identity.client_id)
    if secure:
        # AWS IoT's ATS endpoint chains to Amazon Root CA 1, which the system trusts.
        client.tls_set(
            certfile=identity.certificate_file,
            keyfile=identity.private_key_file,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    connected: queue.Queue[Any] = queue.Queue()
    client.on_connect = lambda _client, _userdata, _flags, reason, _props: connected.put(reason)
    client.connect(address.hostname or "127.0.0.1", address.port or (8883 if secure else 1883))
    client.loop_start()
    try:
        try:
            reason = connected.get(timeout=30)
        except queue.Empty:
            raise TimeoutError("the broker did not accept the connection within 30 s") from None
        if reason.is_failure:
            raise ConnectionError(f"MQTT connect refused: {reason}")
        info = client.publish(topic, json.dumps(payload), qos=1)
        info.wait_for_publish(30)
        if not info.is_published():
            raise TimeoutError("the broker did not acknowledge the publish")
    finally:
        client.disconnect()
        client.loop_stop()


def post_readings(http_url: str, token: str, device_id: str, readings: list[dict[str, Any]]) -> int:
    base = http_url if http_url.endswith("/") else f"{http_url}/"
    request = Request(  # noqa: S310 - the stage's own https:// (or local http://) endpoint
        f"{base}readings",
        data=json.dumps({"deviceId": device_id, "readings": readings}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urlopen(request, timeout=30) as response:  # noqa: S310
        return int(response.status)


# --- AWS: the stage's outputs, a user, a device, metrics, an alarm ------------------------------


class Stage:
    """A deployed stage, through boto3 (the AWS CLI's credentials and region)."""

    def __init__(self, stack_name: str, session: Any = None) -> None:
        import boto3

        self.session = session or boto3.session.Session()
        self.stack_name = stack_name
        stacks = self.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
        self.outputs = {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}

    def client(self, service: str) -> Any:
        return self.session.client(service)  # type: ignore[call-overload]

    def iot_endpoint(self) -> str:
        return str(self.client("iot").describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"])

    def token(self, org: str, cleanup: ExitStack) -> str:
        """An ID token of a temporary user of ``org`` (deleted at the end)."""
        cognito = self.client("cognito-idp")
        pool, client_id = self.outputs["UserPoolId"], self.outputs["TokenAudience"]
        username = f"{org}-user"
        # Upper and lower case, digits and a symbol, as the pool's password policy asks.
        password = f"Sm0ke!{secrets.token_hex(16)}A"
        cognito.admin_create_user(
            UserPoolId=pool,
            Username=username,
            MessageAction="SUPPRESS",
            UserAttributes=[{"Name": "custom:org", "Value": org}],
        )
        cleanup.callback(cognito.admin_delete_user, UserPoolId=pool, Username=username)
        cognito.admin_set_user_password(UserPoolId=pool, Username=username, Password=password, Permanent=True)
        result = cognito.admin_initiate_auth(
            UserPoolId=pool,
            ClientId=client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )
        return str(result["AuthenticationResult"]["IdToken"])

    def device(self, org: str, device_id: str, cleanup: ExitStack) -> DeviceIdentity:
        """A temporary thing of ``org`` with an active certificate carrying the device policy."""
        iot = self.client("iot")
        iot.create_thing(thingName=device_id, attributePayload={"attributes": {"orgId": org}})
        cleanup.callback(iot.delete_thing, thingName=device_id)
        keys = iot.create_keys_and_certificate(setAsActive=True)
        certificate_arn, certificate_id = keys["certificateArn"], keys["certificateId"]
        cleanup.callback(iot.delete_certificate, certificateId=certificate_id, forceDelete=True)
        cleanup.callback(iot.update_certificate, certificateId=certificate_id, newStatus="INACTIVE")
        policy = self.outputs["DevicePolicyName"]
        iot.attach_policy(policyName=policy, target=certificate_arn)
        cleanup.callback(iot.detach_policy, policyName=policy, target=certificate_arn)
        iot.attach_thing_principal(thingName=device_id, principal=certificate_arn)
        cleanup.callback(iot.detach_thing_principal, thingName=device_id, principal=certificate_arn)
        directory = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sensor-stream-smoke-")))
        (directory / "device.pem").write_text(keys["certificatePem"])
        (directory / "device.key").write_text(keys["keyPair"]["PrivateKey"])
        return DeviceIdentity(device_id, str(directory / "device.pem"), str(directory / "device.key"))

    def dashboard_metrics(self) -> list[dict[str, Any]]:
        """The dashboard's metrics of the SensorStream namespace, as GetMetricData queries."""
        body = json.loads(
            self.client("cloudwatch").get_dashboard(DashboardName=self.outputs["DashboardName"])[
                "DashboardBody"
            ]
        )
        return own_metric_queries(body)

    def metric_values(self, queries: list[dict[str, Any]], minutes: int = 15) -> dict[str, list[float]]:
        # Up to a minute ahead: the current minute's datapoint is included, whatever the rounding.
        end = datetime.now(UTC) + timedelta(minutes=1)
        result = self.client("cloudwatch").get_metric_data(
            MetricDataQueries=queries, StartTime=end - timedelta(minutes=minutes + 1), EndTime=end
        )
        return {series["Label"]: list(series["Values"]) for series in result["MetricDataResults"]}

    def alarm_reaches_topic(self, timeout: float = ALARM_TIMEOUT_SECONDS) -> str:
        topic = self.outputs["AlarmTopicArn"]
        cloudwatch, sqs, sns = self.client("cloudwatch"), self.client("sqs"), self.client("sns")
        alarms = cloudwatch.describe_alarms(AlarmNamePrefix=f"{self.stack_name}-")["MetricAlarms"]
        (alarm,) = [a["AlarmName"] for a in alarms if SMOKE_ALARM in a["AlarmName"].replace("-", "").lower()]
        with ExitStack() as cleanup:
            queue_url = sqs.create_queue(QueueName=f"sensor-stream-smoke-{uuid.uuid4().hex[:8]}")["QueueUrl"]
            cleanup.callback(sqs.delete_queue, QueueUrl=queue_url)
            queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            sqs.set_queue_attributes(
                QueueUrl=queue_url, Attributes={"Policy": json.dumps(_topic_may_send(queue_arn, topic))}
            )
            subscription = sns.subscribe(
                TopicArn=topic,
                Protocol="sqs",
                Endpoint=queue_arn,
                Attributes={"RawMessageDelivery": "true"},
                ReturnSubscriptionArn=True,
            )["SubscriptionArn"]
            cleanup.callback(sns.unsubscribe, SubscriptionArn=subscription)
            cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="make smoke")
            cleanup.callback(
                cloudwatch.set_alarm_state, AlarmName=alarm, StateValue="OK", StateReason="make smoke done"
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for message in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=10).get(
                    "Messages", []
                ):
                    if alarm in message["Body"]:
                        return f"{alarm} -> ALARM reached {topic}"
            raise TimeoutError(f"no notification of {alarm} on {topic} within {timeout:.0f} s")


def _topic_may_send(queue_arn: str, topic_arn: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }


def own_metric_queries(
    dashboard_body: dict[str, Any], namespace: str = "SensorStream"
) -> list[dict[str, Any]]:
    """GetMetricData queries for the dashboard's graphs of ``namespace``: each metric row
    ``[namespace, name, dim, value, ..., {options}]`` with its stat and period."""
    queries: list[dict[str, Any]] = []
    for widget in dashboard_body.get("widgets", []):
        for row in widget.get("properties", {}).get("metrics", []):
            if not row or row[0] != namespace:
                continue
            options = row[-1] if isinstance(row[-1], dict) else {}
            names = row[: len(row) - 1] if options else row
            dimensions = [{"Name": names[i], "Value": names[i + 1]} for i in range(2, len(names) - 1, 2)]
            stat = options.get("stat", "Sum")
            label = f"{names[1]} {stat}"
            if any(query["Label"] == label for query in queries):
                continue
            queries.append(
                {
                    "Id": f"m{len(queries)}",
                    "Label": label,
                    "MetricStat": {
                        "Metric": {"Namespace": namespace, "MetricName": names[1], "Dimensions": dimensions},
                        "Period": int(options.get("period", 60)),
                        "Stat": stat,
                    },
                }
            )
    return queries


# --- the run -------------------------------------------------------------------------------------


@contextmanager
def _browser(url: str, token: str) -> Iterator[Browser]:
    browser = Browser(url, token)
    try:
        yield browser
    finally:
        browser.close()


def run(args: argparse.Namespace) -> Report:
    report = Report()
    org = args.org or f"smoke-{uuid.uuid4().hex[:10]}"
    device_id = args.device or f"{org}-device"
    with ExitStack() as cleanup:
        stage = Stage(f"SensorStream-{args.stage}") if args.stage else None
        outputs = stage.outputs if stage else {}
        websocket_url = args.websocket_url or outputs.get("WebSocketUrl", "")
        http_url = args.http_url or outputs.get("HttpApiUrl", "")
        mqtt_url = args.mqtt_url or (f"mqtts://{stage.iot_endpoint()}:8883" if stage else "")
        if not (websocket_url and http_url and mqtt_url):
            raise SystemExit("name a deployed stage (--stage prod) or every endpoint (--websocket-url ...)")
        token = args.token or (stage.token(org, cleanup) if stage else "")
        if not token:
            raise SystemExit("--token is needed without --stage")
        identity = (
            stage.device(org, device_id, cleanup)
            if stage and urlsplit(mqtt_url).scheme == "mqtts"
            else DeviceIdentity(device_id)
        )

        browsers: list[Browser] = []

        def connect() -> str:
            browser = cleanup.enter_context(_browser(websocket_url, token))
            browsers.append(browser)
            browser.send({"action": "hello", "requestId": "smoke-hello"})
            answer = browser.wait_for(lambda m: m.get("requestId") == "smoke-hello", DELIVERY_TIMEOUT_SECONDS)
            if answer.get("type") != "connection":
                raise RuntimeError(f"hello answered {answer}")
            return f"{websocket_url} as org {org} ({answer['subscription']['scope']} subscription)"

        if not report.run("websocket", connect):
            return report
        (browser,) = browsers

        def device() -> str:
            reading_id = f"smoke-mqtt-{uuid.uuid4().hex[:8]}"
            topic = f"orgs/{org}/devices/{device_id}/telemetry"
            # A certificate made a moment ago may take a few seconds to be accepted.
            for attempt in range(DEVICE_CONNECT_ATTEMPTS):
                try:
                    publish_as_device(mqtt_url, identity, topic, reading(reading_id))
                    break
                except (OSError, TimeoutError):
                    if attempt == DEVICE_CONNECT_ATTEMPTS - 1:
                        raise
                    time.sleep(10)
            return f"{topic} -> browser in {browser.wait_for_reading(reading_id):.1f} s"

        def http() -> str:
            reading_id = f"smoke-http-{uuid.uuid4().hex[:8]}"
            status = post_readings(http_url, token, device_id, [reading(reading_id)])
            if status != 200:
                raise RuntimeError(f"POST /readings answered {status}")
            return f"POST /readings -> browser in {browser.wait_for_reading(reading_id):.1f} s"

        report.run("device", device)
        report.run("http", http)

        if stage is None:
            report.add("metrics", "SKIP", "no --stage: CloudWatch is AWS only")
            report.add("alarm", "SKIP", "no --stage: CloudWatch alarms and the SNS topic are AWS only")
            return report

        def metrics() -> str:
            queries = stage.dashboard_metrics()
            deadline = time.monotonic() + METRICS_TIMEOUT_SECONDS
            while True:
                values = stage.metric_values(queries)
                stored, ticks = (
                    sum(values.get("ReadingsStored Sum", [])),
                    sum(values.get("FlushTicks Sum", [])),
                )
                if (stored and ticks) or time.monotonic() > deadline:
                    break
                time.sleep(20)
            if not ticks:
                raise RuntimeError("no FlushTicks in the last 15 minutes: the flush is not ticking")
            if not stored:
                raise RuntimeError("no ReadingsStored in the last 15 minutes")
            lag = {stat: values.get(f"EndToEndLag {stat}", []) for stat in ("p50", "p99")}
            lag_text = ", ".join(f"{stat} {max(v):.0f} ms" for stat, v in lag.items() if v) or "no posts yet"
            counts = f"{stored:.0f} readings stored, {ticks:.0f} ticks"
            return f"{len(queries)} dashboard metrics; {counts}; lag {lag_text}"

        report.run("metrics", metrics)
        report.run("alarm", stage.alarm_reaches_topic)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--stage", help="the deployed stage (stack SensorStream-<stage>); its outputs name the rest"
    )
    parser.add_argument("--websocket-url", help="instead of the stage's WebSocketUrl")
    parser.add_argument("--http-url", help="instead of the stage's HttpApiUrl")
    parser.add_argument("--mqtt-url", help="mqtt://host:port (no TLS) instead of the stage's IoT endpoint")
    parser.add_argument("--token", help="a token of --org instead of a temporary Cognito user's")
    parser.add_argument("--org", help="the org to use (default: a new smoke-<random> org)")
    parser.add_argument("--device", help="the device id (default: <org>-device)")
    report = run(parser.parse_args(argv))
    counts = {
        status: sum(check.status == status for check in report.checks) for status in ("PASS", "FAIL", "SKIP")
    }
    verdict = "FAILED" if report.failed else "OK"
    print(
        f"smoke {verdict}: {counts['PASS']} checks passed, {counts['FAIL']} failed, {counts['SKIP']} skipped"
    )
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
