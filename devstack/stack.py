"""``python -m devstack``: every piece of the system on 127.0.0.1, until Ctrl-C. Prints
the contract's ready line on stdout once everything accepts connections; everything
else (banner, logs of the stack and of the functions) goes to stderr.

Processes: this one (the emulated API Gateway, IoT rules and data plane, schedule,
simulator, dashboard, admin API), moto (DynamoDB), the MQTT broker, and the Lambda
execution environments, each function with its own pool (devstack/lambda_runtime.py).
Children die with this process however it ends (devstack/processes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from typing import Any, TextIO

import boto3

from devstack import aws_server
from devstack.config import (
    LOOPBACK,
    REGION,
    STAGE,
    WEB_DIR,
    StackConfig,
)
from devstack.dashboard import DashboardServer
from devstack.example_rules import DOOR_OPEN_AFTER_SECONDS, example_rules
from devstack.example_rules import install as install_example_rules
from devstack.faults import AdminApi, FaultState
from devstack.http_api import HttpApi, JwtAuthorizer
from devstack.http_server import AsyncHttpServer, HttpRequest, HttpResponse, LoopbackHttpServer
from devstack.http_server import Endpoint as HttpEndpoint
from devstack.iot_core import IotDataPlane, deploy_rules, serve_broker
from devstack.lambda_api import LambdaInvokeApi
from devstack.lambda_runtime import AsyncInvoker, FunctionConfig, LambdaFunction
from devstack.lambda_worker import FAULT_SLOTS
from devstack.notifications import AlertInbox
from devstack.processes import context as process_context
from devstack.processes import stop_process
from devstack.schedule import Schedule
from devstack.simulator import Endpoint, Fleet, build_fleet
from devstack.token import mint_token
from devstack.websocket_gateway import GatewayLimits, Routes, WebSocketGateway

log = logging.getLogger("devstack")

DEFAULT_TABLE_NAME = "sensor-stream"
CHILD_START_TIMEOUT_SECONDS = 60.0
# moto's TTL sweep period (DynamoDB deletes expired items within days; 30 s keeps a
# long-running local table small).
TTL_SWEEP_SECONDS = 30.0


def _configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("devstack").setLevel(logging.INFO)
    # Libraries that narrate every connection.
    for name in ("werkzeug", "amqtt", "transitions", "websockets"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _function_environment(
    config: StackConfig, aws_url: str, callback_url: str, iot_data_url: str, lambda_url: str
) -> None:
    """What the functions' configuration would hold in AWS, pointed at the local endpoints.
    Set before any handler module is imported (they create clients from it)."""
    for inherited in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "IOT_DATA_ENDPOINT", "JWT_JWKS_URL"):
        os.environ.pop(inherited, None)
    os.environ.update(
        {
            # Fake credentials: nothing may reach a real account from here.
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
            "AWS_ENDPOINT_URL_DYNAMODB": aws_url,
            "AWS_ENDPOINT_URL_SNS": aws_url,
            "AWS_ENDPOINT_URL_SQS": aws_url,
            "AWS_ENDPOINT_URL_IOT_DATA_PLANE": iot_data_url,
            "AWS_ENDPOINT_URL_LAMBDA": lambda_url,
            "FLUSH_MAX_SHARDS": str(config.flush_max_shards),
            "FLUSH_CONNECTIONS_PER_SHARD": str(config.flush_connections_per_shard),
            "WEBSOCKET_CALLBACK_URL": callback_url,
            "JWT_SECRET": config.jwt_secret,
            "POWERTOOLS_SERVICE_NAME": "sensor-stream",
            "POWERTOOLS_METRICS_NAMESPACE": "SensorStream",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    os.environ.setdefault("TABLE_NAME", DEFAULT_TABLE_NAME)
    # The table starts empty, so there is no old backlog to catch up; a shorter window than
    # AWS's keeps the first ticks quick on moto, but it must outlast a crashed flusher's
    # lease (30 s) and its restart, or the successor would skip what it missed.
    os.environ.setdefault("FLUSH_MAX_CATCH_UP_SECONDS", "45")
    # A fresh start reads that whole (empty) window in its first tick rather than 10 s a
    # tick: otherwise the first readings after `make dev` wait for a 5-tick catch-up.
    os.environ.setdefault("FLUSH_MAX_SECONDS_PER_TICK", "45")
    os.environ.setdefault("LOG_LEVEL", "WARNING")


def _bind_error(variable: str, port: int, error: OSError) -> SystemExit:
    return SystemExit(
        f"cannot listen on 127.0.0.1:{port} ({error.strerror}); set {variable}=0 for any free port"
    )


def _banner(
    urls: dict[str, str], config: StackConfig, aws_url: str, admin_url: str, example_rule_count: int
) -> str:
    first_org, other_org = config.simulated_orgs[0], config.simulated_orgs[-1]
    token = mint_token(first_org)
    devices = (
        f"{config.simulated_devices} simulated devices in {', '.join(config.simulated_orgs)}"
        if config.simulated_devices
        else "no simulated devices (SIMULATED_DEVICES=0)"
    )
    return "\n".join(
        [
            "",
            "sensor-stream is running on 127.0.0.1",
            f"  dashboard  {urls['dashboard']}/?token={token}",
            f"             (signed in as org '{first_org}'; another org: make token ORG={other_org})",
            f"  websocket  {urls['websocket']}   http {urls['http']}/readings   mqtt {urls['mqtt']}",
            f"  DynamoDB   {aws_url} (moto), table {os.environ['TABLE_NAME']}",
            f"  admin      {admin_url}/faults (fault injection, see devstack/README.md)",
            f"  {devices}",
            f"  {example_rule_count} example alert rules (LOCAL_EXAMPLE_RULES=false for none)",
            "  Ctrl-C stops everything.",
            "",
        ]
    )


def _child_port(ready: Any, what: str, variable: str, port: int) -> int:
    """The port a child process reports on its ready pipe, or why it could not start."""
    if not ready.poll(CHILD_START_TIMEOUT_SECONDS):
        raise SystemExit(f"the {what} did not start within {CHILD_START_TIMEOUT_SECONDS:.0f} s")
    answer = ready.recv()
    if not isinstance(answer, int):
        raise SystemExit(
            f"cannot start the {what} on 127.0.0.1:{port} ({answer}); set {variable}=0 for any free port"
        )
    return answer


def _listen(variable: str, port: int) -> socket.socket:
    try:
        return socket.create_server((LOOPBACK, port), backlog=256)
    except OSError as error:
        raise _bind_error(variable, port, error) from error


def _serve(
    running: contextlib.AsyncExitStack, endpoint: HttpEndpoint, variable: str, port: int
) -> LoopbackHttpServer:
    """An HTTP endpoint on its configured port, stopped with the stack."""
    try:
        server = LoopbackHttpServer(variable.removeprefix("LOCAL_").lower(), endpoint, port)
    except OSError as error:
        raise _bind_error(variable, port, error) from error
    server.start()
    running.push_async_callback(asyncio.to_thread, server.stop)
    return server


def _function_configs(config: StackConfig) -> dict[str, FunctionConfig]:
    """Every function as ``sensor_stream.catalog`` declares it (handler, timeout, memory,
    asynchronous invocation settings), with this machine's share of concurrency."""
    from sensor_stream import catalog

    environment = dict(os.environ)
    concurrency = {
        "connect": config.connect_concurrency,
        "publish": config.publish_concurrency,
        "ingest": config.ingest_concurrency,
        "rules": config.rules_concurrency,
        # No reserved concurrency: the next scheduled loop of each fan-out shard starts
        # while the running one finishes its last tick, and takes over from it.
        "flush": 2 * config.flush_max_shards,
    }
    return {
        spec.name: FunctionConfig(
            f"sensor-stream-{spec.name}",
            spec.handler,
            timeout_seconds=config.flush_timeout_seconds if spec is catalog.FLUSH else spec.timeout_seconds,
            memory_mb=spec.memory_mb,
            concurrency=concurrency[spec.name],
            async_retries=spec.async_retry_attempts,
            max_event_age_seconds=spec.async_max_event_age_seconds,
            environment=environment,
            # A device burst queues in ingest's event queue, as in Lambda, instead of
            # taking the CPU that the flush and the connections need to deliver.
            nice=config.ingest_nice if spec is catalog.INGEST else 0,
        )
        for spec in catalog.FUNCTIONS
    }


def _environments_ahead(function_key: str, config: StackConfig) -> int:
    """Environments started with the stack: all of ingest's, the first shard's two of the
    flush (the running loop and the next one, which overlap at every hand-over), one of
    each other function."""
    return {"ingest": config.ingest_concurrency, "flush": 2}.get(function_key, 1)


async def run_stack(config: StackConfig, ready_stream: TextIO) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    processes = process_context()

    async with contextlib.AsyncExitStack() as running:
        # DynamoDB on moto, in its own process; the port is bound here so that a busy one
        # is reported at once (moto would wait forever).
        listener = _listen("LOCAL_AWS_PORT", config.aws_port)
        ours, theirs = processes.Pipe()
        moto = processes.Process(
            target=aws_server.serve, args=(listener, theirs, TTL_SWEEP_SECONDS), name="moto", daemon=True
        )
        moto.start()
        running.callback(stop_process, moto)
        theirs.close()
        listener.close()
        aws_port = await asyncio.to_thread(_child_port, ours, "DynamoDB emulator", "LOCAL_AWS_PORT", 0)
        aws_url = f"http://{LOOPBACK}:{aws_port}"

        ours, theirs = processes.Pipe()
        broker = processes.Process(
            target=serve_broker,
            args=(config.mqtt_port, theirs, config.mqtt_broker == "mosquitto"),
            name="mqtt-broker",
            daemon=True,
        )
        broker.start()
        running.callback(stop_process, broker)
        theirs.close()
        mqtt_port = await asyncio.to_thread(
            _child_port, ours, "MQTT broker", "LOCAL_MQTT_PORT", config.mqtt_port
        )

        iot_data_plane = IotDataPlane(LOOPBACK, mqtt_port)
        await asyncio.to_thread(iot_data_plane.start)
        running.push_async_callback(asyncio.to_thread, iot_data_plane.stop)
        iot_data_server = LoopbackHttpServer("iot-data", iot_data_plane, 0)
        iot_data_server.start()
        running.push_async_callback(asyncio.to_thread, iot_data_server.stop)

        gateway: WebSocketGateway | None = None

        async def management_api(request: HttpRequest) -> HttpResponse:
            if gateway is None:
                return HttpResponse.json(503, {"message": "starting"})
            return await gateway.management_api(request)

        def management_answer_at_once(request: HttpRequest) -> HttpResponse | None:
            return None if gateway is None else gateway.management_answer_at_once(request)

        # On this event loop, the gateway's: the flush's posts reach its sockets directly,
        # most answered as they are parsed.
        management_server = AsyncHttpServer(
            "management-api", management_api, immediate=management_answer_at_once
        )
        await management_server.start(0)
        running.push_async_callback(management_server.stop)

        invoker = AsyncInvoker(config.async_retry_base_seconds)
        running.callback(invoker.close)
        lambda_api = LambdaInvokeApi(invoker)
        lambda_server = LoopbackHttpServer("lambda", lambda_api, 0)
        lambda_server.start()
        running.push_async_callback(asyncio.to_thread, lambda_server.stop)

        _function_environment(
            config, aws_url, f"{management_server.url}/{STAGE}", iot_data_server.url, lambda_server.url
        )
        from sensor_stream.table import create_table

        await asyncio.to_thread(create_table, boto3.client("dynamodb"), os.environ["TABLE_NAME"])
        alert_inbox = await asyncio.to_thread(AlertInbox)
        os.environ["ALERT_TOPIC_ARN"] = alert_inbox.topic_arn
        alert_inbox.start()
        running.push_async_callback(asyncio.to_thread, alert_inbox.stop)

        faults = FaultState(processes.RawArray("d", FAULT_SLOTS))
        functions = {
            key: LambdaFunction(function_config, faults.dynamodb_rates)
            for key, function_config in _function_configs(config).items()
        }
        for key, function in functions.items():
            running.push_async_callback(asyncio.to_thread, function.close)
            # Ingest's environments all start with the stack: a first burst of devices
            # would otherwise wait on their initialisation (~1 s of CPU each here), taken
            # from a machine already busy with that burst. So do the flush's two (the
            # running invocation and its successor at each hand-over): on AWS a cold start
            # does not take the running flush's CPU; here it would, at the first hand-over.
            function.prewarm(_environments_ahead(key, config))
        connect, publish = functions["connect"], functions["publish"]
        ingest, flush = functions["ingest"], functions["flush"]
        lambda_api.serve({function.name: function for function in functions.values()})

        from sensor_stream import catalog

        session_routes = dict.fromkeys(catalog.CONNECT.client_actions, connect)
        gateway = WebSocketGateway(
            Routes(
                connect=connect,
                disconnect=connect,
                default=connect,
                by_action={**session_routes, **dict.fromkeys(catalog.PUBLISH.client_actions, publish)},
            ),
            stage=STAGE,
            limits=GatewayLimits(
                idle_seconds=config.websocket_idle_seconds,
                max_seconds=config.websocket_max_seconds,
                disconnect_on_drop=config.websocket_disconnect_on_drop,
                client_buffer_bytes=config.websocket_client_buffer_bytes,
                stalled_close_seconds=config.websocket_stalled_close_seconds,
            ),
            faults=faults.gateway,
        )
        try:
            websocket_port = await gateway.start(config.websocket_port)
        except OSError as error:
            raise _bind_error("LOCAL_WS_PORT", config.websocket_port, error) from error
        running.push_async_callback(gateway.stop)

        authorizer = JwtAuthorizer(
            config.jwt_secret,
            issuer=os.environ.get("JWT_ISSUER", ""),
            audience=os.environ.get("JWT_AUDIENCE", ""),
        )
        http_routes = {route: functions[spec.name] for route, spec in catalog.http_routes().items()}
        http_server = _serve(running, HttpApi(http_routes, authorizer), "LOCAL_HTTP_PORT", config.http_port)
        admin_server = _serve(
            running, AdminApi(faults, functions, alert_inbox), "LOCAL_ADMIN_PORT", config.admin_port
        )

        from sensor_stream.iot_rules import TOPIC_RULES

        for runner in deploy_rules(
            TOPIC_RULES, {"ingest": ingest, "publish": publish}, invoker, LOOPBACK, mqtt_port
        ):
            await asyncio.to_thread(runner.start)
            running.push_async_callback(asyncio.to_thread, runner.stop)

        schedule = Schedule(flush, invoker, config.flush_schedule_seconds)
        schedule.start()
        running.push_async_callback(asyncio.to_thread, schedule.stop)

        urls = {
            "websocket": f"ws://{LOOPBACK}:{websocket_port}",
            "http": http_server.url,
            "mqtt": f"mqtt://{LOOPBACK}:{mqtt_port}",
        }
        try:
            dashboard = DashboardServer(
                WEB_DIR, {"websocketUrl": urls["websocket"], "httpUrl": urls["http"]}, config.dashboard_port
            )
        except OSError as error:
            raise _bind_error("LOCAL_DASHBOARD_PORT", config.dashboard_port, error) from error
        dashboard.start()
        running.push_async_callback(asyncio.to_thread, dashboard.stop)
        urls["dashboard"] = dashboard.url
        urls["admin"] = admin_server.url

        example_rule_count = 0
        if config.simulated_devices > 0:
            devices = build_fleet(
                config.simulated_devices,
                orgs=config.simulated_orgs,
                door_open_after_seconds=DOOR_OPEN_AFTER_SECONDS if config.example_rules else None,
            )
            if config.example_rules:
                example_rule_count = await asyncio.to_thread(
                    install_example_rules, http_server.url, example_rules(devices), config.jwt_secret
                )
            fleet = Fleet(devices, Endpoint(host=LOOPBACK, port=mqtt_port))
            await asyncio.to_thread(fleet.start)
            running.push_async_callback(asyncio.to_thread, fleet.stop)

        ready_stream.write(json.dumps({"event": "ready", **urls}) + "\n")
        ready_stream.flush()
        print(
            _banner(urls, config, aws_url, admin_server.url, example_rule_count), file=sys.stderr, flush=True
        )

        await stop.wait()
        log.info("stopping")
        # A flush still ticking would post into a gateway that is going away.
        await asyncio.to_thread(flush.end_running_invocations, 5)
        # Nothing new starts from here: a backlog (a flooded connect function) and the
        # $disconnect of every socket the gateway now closes fail at once instead of
        # holding the stop up.
        for function in functions.values():
            function.stop_accepting()
    log.info("stopped")


def main() -> None:
    # stdout carries the ready line alone, on a descriptor no child inherits (Python's
    # dup is non-inheritable); fd 1 itself becomes stderr for whatever else prints
    # (Powertools' logger binds sys.stdout, children inherit fd 1).
    sys.stdout.flush()
    ready_stream = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _configure_logging()
    config = StackConfig.from_environment()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_stack(config, ready_stream))
