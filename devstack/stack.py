"""``python -m devstack``: every piece of the system on 127.0.0.1 in one process, until
Ctrl-C. Prints the contract's ready line on stdout once everything accepts connections;
everything else (banner, logs of the stack and of the functions) goes to stderr.
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
from concurrent.futures import ThreadPoolExecutor
from typing import TextIO

import boto3
from moto.server import ThreadedMotoServer

from devstack import moto_fidelity
from devstack.config import (
    LOOPBACK,
    REGION,
    STAGE,
    WEB_DIR,
    StackConfig,
    ensure_functions_importable,
)
from devstack.dashboard import DashboardServer
from devstack.http_api import HttpApi, JwtAuthorizer
from devstack.http_server import HttpRequest, HttpResponse, LoopbackHttpServer
from devstack.iot_core import EmbeddedBroker, IotDataPlane, deploy_rules
from devstack.lambda_runtime import AsyncInvoker, LambdaFunction
from devstack.schedule import Schedule
from devstack.simulator import Endpoint, Fleet, build_fleet
from devstack.token import mint_token
from devstack.websocket_gateway import GatewayLimits, Routes, WebSocketGateway

log = logging.getLogger("devstack")

# Lambda's concurrency, scaled down: invocations run on these threads.
MAX_CONCURRENT_INVOCATIONS = 32
DEFAULT_TABLE_NAME = "sensor-stream"


def _configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("devstack").setLevel(logging.INFO)
    # Libraries that narrate every connection.
    for name in ("werkzeug", "amqtt", "transitions", "websockets"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _function_environment(config: StackConfig, aws_url: str, callback_url: str, iot_data_url: str) -> None:
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
            "AWS_ENDPOINT_URL_IOT_DATA_PLANE": iot_data_url,
            "WEBSOCKET_CALLBACK_URL": callback_url,
            "JWT_SECRET": config.jwt_secret,
            "POWERTOOLS_SERVICE_NAME": "sensor-stream",
            "POWERTOOLS_METRICS_NAMESPACE": "SensorStream",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    os.environ.setdefault("TABLE_NAME", DEFAULT_TABLE_NAME)
    # The table starts empty, so there is no old backlog to catch up; a short window keeps
    # the first tick quick on moto (each second of window costs one query per outbox shard).
    os.environ.setdefault("FLUSH_MAX_CATCH_UP_SECONDS", "5")
    os.environ.setdefault("LOG_LEVEL", "WARNING")


def _bind_error(variable: str, port: int, error: OSError) -> SystemExit:
    return SystemExit(
        f"cannot listen on 127.0.0.1:{port} ({error.strerror}); set {variable}=0 for any free port"
    )


def _banner(urls: dict[str, str], config: StackConfig, aws_url: str) -> str:
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
            f"  {devices}",
            "  Ctrl-C stops everything.",
            "",
        ]
    )


async def run_stack(config: StackConfig, ready_stream: TextIO) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    async with contextlib.AsyncExitStack() as running:
        # AWS APIs (DynamoDB) on moto, with queries per partition and TTL as in DynamoDB
        # (unpatched, a stack that streams for a few minutes slows to a crawl).
        moto_fidelity.apply()
        sweeper = moto_fidelity.TtlSweeper()
        sweeper.start()
        running.callback(sweeper.stop)
        if config.aws_port:
            # moto binds in its own thread and would wait forever on a busy port: check first.
            try:
                with socket.create_server((LOOPBACK, config.aws_port)):
                    pass
            except OSError as error:
                raise _bind_error("LOCAL_AWS_PORT", config.aws_port, error) from error
        moto = ThreadedMotoServer(ip_address=LOOPBACK, port=config.aws_port, verbose=False)
        await asyncio.to_thread(moto.start)
        running.push_async_callback(asyncio.to_thread, moto.stop)
        aws_url = f"http://{LOOPBACK}:{moto.get_host_and_port()[1]}"

        broker = EmbeddedBroker()
        try:
            mqtt_port = await broker.start(config.mqtt_port)
        except Exception as error:
            raise SystemExit(
                f"cannot start the MQTT broker on 127.0.0.1:{config.mqtt_port} ({error}); "
                "set LOCAL_MQTT_PORT=0 for any free port"
            ) from error
        running.push_async_callback(broker.stop)

        iot_data_plane = IotDataPlane(LOOPBACK, mqtt_port)
        await asyncio.to_thread(iot_data_plane.start)
        running.push_async_callback(asyncio.to_thread, iot_data_plane.stop)
        iot_data_server = LoopbackHttpServer("iot-data", iot_data_plane, 0)
        iot_data_server.start()
        running.push_async_callback(asyncio.to_thread, iot_data_server.stop)

        gateway: WebSocketGateway | None = None

        def management_api(request: HttpRequest) -> HttpResponse:
            if gateway is None:
                return HttpResponse.json(503, {"message": "starting"})
            return gateway.management_api(request)

        management_server = LoopbackHttpServer("management-api", management_api, 0)
        management_server.start()
        running.push_async_callback(asyncio.to_thread, management_server.stop)

        _function_environment(config, aws_url, f"{management_server.url}/{STAGE}", iot_data_server.url)
        ensure_functions_importable()
        from sensor_stream.table import create_table

        await asyncio.to_thread(create_table, boto3.client("dynamodb"), os.environ["TABLE_NAME"])

        connect = LambdaFunction.load(
            "sensor-stream-connect", "connect.handler.lambda_handler", timeout_seconds=10
        )
        publish = LambdaFunction.load(
            "sensor-stream-publish", "publish.handler.lambda_handler", timeout_seconds=10
        )
        ingest = LambdaFunction.load(
            "sensor-stream-ingest", "ingest.handler.lambda_handler", timeout_seconds=30
        )
        flush = LambdaFunction.load(
            "sensor-stream-flush",
            "flush.handler.lambda_handler",
            timeout_seconds=config.flush_timeout_seconds,
        )

        executor = ThreadPoolExecutor(MAX_CONCURRENT_INVOCATIONS, thread_name_prefix="lambda")
        running.callback(executor.shutdown, wait=False, cancel_futures=True)
        invoker = AsyncInvoker(executor, config.async_retry_base_seconds)
        running.callback(invoker.close)

        from sensor_stream import catalog

        session_routes = dict.fromkeys(catalog.CONNECT.client_actions, connect)
        gateway = WebSocketGateway(
            Routes(
                connect=connect,
                disconnect=connect,
                default=connect,
                by_action={**session_routes, **dict.fromkeys(catalog.PUBLISH.client_actions, publish)},
            ),
            executor,
            stage=STAGE,
            limits=GatewayLimits(
                idle_seconds=config.websocket_idle_seconds,
                max_seconds=config.websocket_max_seconds,
                disconnect_on_drop=config.websocket_disconnect_on_drop,
            ),
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
        try:
            http_server = LoopbackHttpServer("http-api", HttpApi(ingest, authorizer), config.http_port)
        except OSError as error:
            raise _bind_error("LOCAL_HTTP_PORT", config.http_port, error) from error
        http_server.start()
        running.push_async_callback(asyncio.to_thread, http_server.stop)

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

        if config.simulated_devices > 0:
            fleet = Fleet(
                build_fleet(config.simulated_devices, orgs=config.simulated_orgs),
                Endpoint(host=LOOPBACK, port=mqtt_port),
            )
            await asyncio.to_thread(fleet.start)
            running.push_async_callback(asyncio.to_thread, fleet.stop)

        ready_stream.write(json.dumps({"event": "ready", **urls}) + "\n")
        ready_stream.flush()
        print(_banner(urls, config, aws_url), file=sys.stderr, flush=True)

        await stop.wait()
        log.info("stopping")
        # A flush still ticking would post into a gateway that is going away.
        flush.end_running_invocations(0)
    log.info("stopped")


def main() -> None:
    # stdout carries the ready line alone: whatever else prints (Powertools' logger binds
    # sys.stdout when the handlers are imported) goes to stderr.
    ready_stream = sys.stdout
    sys.stdout = sys.stderr
    _configure_logging()
    config = StackConfig.from_environment()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_stack(config, ready_stream))
