"""Simulated devices: realistic readings over MQTT and answers to commands.

Each device is an MQTT client (client id = deviceId, as an IoT thing) of one org, with a
few units (fridge, freezer, ...) whose temperature drifts around a set point, now and
then leaves it (a door left open), with humidity, a draining battery and a wandering
signal. It publishes ``{"readings": [...]}`` on its telemetry topic and acknowledges
commands on ``.../commands/ack``.

Runs inside ``make dev`` or alone against any MQTT endpoint, e.g. to load-test::

    make simulate ARGS="--host 127.0.0.1 --port 1883 --devices 200 --rate 5 --duration 60"
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from paho.mqtt.client import CallbackAPIVersion, Client, MQTTMessage
from paho.mqtt.reasoncodes import ReasonCode

from devstack.config import DEFAULT_ORGS, LOOPBACK
from sensor_stream.iot_rules import (
    TELEMETRY_RULE,
    command_ack_topic,
    command_topic,
    telemetry_topic,
)

log = logging.getLogger("devstack.simulator")

CONNECT_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class UnitProfile:
    kind: str
    set_point: float
    noise: float
    # Degrees an excursion adds at its peak (door open, defrost, compressor trouble).
    excursion_peak: float
    humidity: float


PROFILES = (
    UnitProfile("fridge", 4.0, 0.15, 7.0, 55.0),
    UnitProfile("freezer", -18.0, 0.25, 10.0, 40.0),
    UnitProfile("ambient", 21.0, 0.2, 4.0, 45.0),
    UnitProfile("coldroom", 2.0, 0.1, 5.0, 70.0),
)
# Per second: how often an excursion starts, and how fast one fades.
EXCURSION_PROBABILITY = 1 / 240
EXCURSION_HALF_LIFE_SECONDS = 45.0
# Battery drain per second (%), so a battery visibly drains over a session.
BATTERY_DRAIN_PER_SECOND = 0.002


def _iso_now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass
class SimulatedUnit:
    unit_id: str
    site_id: str | None
    profile: UnitProfile
    temperature: float
    humidity: float
    excursion: float = 0.0
    # Slow drift of the set point itself (thermostat wander), in degrees.
    drift_phase: float = 0.0
    # When (monotonic) a full excursion starts for sure: the door left open that the
    # example alert rules (devstack/example_rules.py) catch within a minute of start-up.
    door_opens_at: float | None = None

    def open_door_when_due(self, now: float) -> None:
        if self.door_opens_at is not None and now >= self.door_opens_at:
            self.excursion += self.profile.excursion_peak
            self.door_opens_at = None

    def step(self, rng: random.Random, seconds: float) -> None:
        self.drift_phase += seconds / 600 * 2 * math.pi
        target = self.profile.set_point + 0.6 * math.sin(self.drift_phase) + self.excursion
        # Mean-reverting walk towards the target (exact decay, stable for any step).
        self.temperature = target + (self.temperature - target) * math.exp(-0.1 * seconds)
        self.temperature += rng.gauss(0, self.profile.noise) * math.sqrt(min(seconds, 10.0))
        self.excursion *= 0.5 ** (seconds / EXCURSION_HALF_LIFE_SECONDS)
        if rng.random() < EXCURSION_PROBABILITY * seconds:
            self.excursion += self.profile.excursion_peak * rng.uniform(0.5, 1.0)
        self.humidity = self.profile.humidity + (self.humidity - self.profile.humidity) * math.exp(
            -0.05 * seconds
        )
        self.humidity = min(100.0, max(0.0, self.humidity + rng.gauss(0, 0.4)))


@dataclass
class SimulatedDevice:
    org_id: str
    device_id: str
    units: list[SimulatedUnit]
    battery: float
    signal_strength: float
    interval_seconds: float
    rng: random.Random = field(repr=False)
    last_step: float = field(default_factory=time.monotonic)

    def readings(self, now: float | None = None) -> dict[str, Any]:
        """The next telemetry payload, with every unit advanced to ``now`` (monotonic)."""
        now = time.monotonic() if now is None else now
        seconds = max(0.0, now - self.last_step)
        self.last_step = now
        self.battery -= BATTERY_DRAIN_PER_SECOND * seconds * self.rng.uniform(0.5, 1.5)
        if self.battery < 5:
            self.battery = 100.0  # someone swapped the batteries
        self.signal_strength += self.rng.gauss(0, 1.5)
        self.signal_strength = min(-40.0, max(-110.0, self.signal_strength))
        recorded_at = _iso_now()
        payload = []
        for unit in self.units:
            unit.open_door_when_due(now)
            unit.step(self.rng, seconds)
            reading: dict[str, Any] = {
                "unitId": unit.unit_id,
                "temperature": round(unit.temperature, 2),
                "humidity": round(unit.humidity, 1),
                "battery": round(self.battery, 1),
                "signalStrength": round(self.signal_strength),
                "recordedAt": recorded_at,
            }
            if unit.site_id:
                reading["siteId"] = unit.site_id
            payload.append(reading)
        return {"readings": payload}

    def answer(self, command: dict[str, Any]) -> tuple[str, str]:
        """(status, detail) of a command: what a real device would acknowledge."""
        name = command.get("command")
        params = command.get("params")
        if not isinstance(params, dict):
            params = {}
        if name == "ping":
            return "ok", "pong"
        if name == "identify":
            return "ok", "blinking the status LED for 10 s"
        if name == "reboot":
            return "ok", "rebooting"
        if name == "setReportingInterval":
            seconds = params.get("seconds")
            if not isinstance(seconds, int | float) or not 0.1 <= seconds <= 3600:
                return "error", "params.seconds must be a number between 0.1 and 3600"
            self.interval_seconds = float(seconds)
            return "ok", f"reporting every {seconds} s"
        return "error", f"unknown command {name!r}"


def build_fleet(
    count: int,
    *,
    orgs: Sequence[str] = DEFAULT_ORGS,
    rate: float = 1.0,
    seed: int | None = None,
    door_open_after_seconds: float | None = None,
) -> list[SimulatedDevice]:
    """Devices spread round-robin over the orgs; 2-3 units each, most at a site. With
    ``door_open_after_seconds``, each org's first freezer has its door left open that long
    after now (a sure excursion, on top of the random ones)."""
    seeder = random.Random(seed)
    devices = []
    door_opens_at = None if door_open_after_seconds is None else time.monotonic() + door_open_after_seconds
    orgs_with_open_door: set[str] = set()
    for index in range(count):
        org_id = orgs[index % len(orgs)]
        number = index // len(orgs) + 1
        device_id = f"{org_id}-gw-{number:02d}"
        rng = random.Random(seeder.getrandbits(64))
        site_id = f"{org_id}-site-{(number + 1) // 2}" if number % 3 else None
        units = []
        for slot in range(2 + number % 2):
            profile = PROFILES[(number + slot) % len(PROFILES)]
            unit = SimulatedUnit(
                unit_id=f"{device_id}.{profile.kind}",
                site_id=site_id,
                profile=profile,
                temperature=profile.set_point + rng.gauss(0, 0.5),
                humidity=profile.humidity + rng.gauss(0, 3),
                drift_phase=rng.uniform(0, 2 * math.pi),
            )
            if door_opens_at is not None and profile.kind == "freezer" and org_id not in orgs_with_open_door:
                unit.door_opens_at = door_opens_at
                orgs_with_open_door.add(org_id)
            units.append(unit)
        devices.append(
            SimulatedDevice(
                org_id=org_id,
                device_id=device_id,
                units=units,
                battery=rng.uniform(60, 100),
                signal_strength=rng.uniform(-90, -55),
                interval_seconds=1 / rate,
                rng=rng,
            )
        )
    return devices


@dataclass(frozen=True)
class Endpoint:
    host: str = LOOPBACK
    port: int = 1883
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # Publish telemetry to the rule directly ($aws/rules/<rule>/...): AWS IoT only.
    basic_ingest: bool = False
    qos: int = 1


@dataclass
class FleetStats:
    messages: int = 0
    readings: int = 0
    commands: int = 0
    acks: int = 0
    started: float = field(default_factory=time.monotonic)

    def summary(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.messages} messages ({self.readings} readings, {self.readings / elapsed:.1f}/s) "
            f"in {elapsed:.1f} s; {self.commands} commands, {self.acks} acks"
        )


class Fleet:
    """Connects the devices, publishes on each one's interval and answers commands."""

    def __init__(self, devices: list[SimulatedDevice], endpoint: Endpoint) -> None:
        self.devices = devices
        self.endpoint = endpoint
        self.stats = FleetStats()
        self._stats_lock = threading.Lock()
        self._clients: dict[str, Client] = {}
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def _client(self, device: SimulatedDevice, connected: threading.Event) -> Client:
        client = Client(CallbackAPIVersion.VERSION2, client_id=device.device_id, clean_session=True)
        if self.endpoint.cert_file or self.endpoint.ca_file:
            client.tls_set(
                ca_certs=self.endpoint.ca_file,
                certfile=self.endpoint.cert_file,
                keyfile=self.endpoint.key_file,
            )

        def on_connect(
            client: Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
        ) -> None:
            if reason.is_failure:
                log.error("%s could not connect: %s", device.device_id, reason)
                return
            client.subscribe(command_topic(device.org_id, device.device_id), qos=1)
            connected.set()

        def on_message(client: Client, userdata: Any, message: MQTTMessage) -> None:
            self._on_command(client, device, message)

        client.on_connect = on_connect
        client.on_message = on_message
        return client

    def _on_command(self, client: Client, device: SimulatedDevice, message: MQTTMessage) -> None:
        try:
            command = json.loads(message.payload)
        except ValueError:
            log.warning("%s ignores a command that is not JSON", device.device_id)
            return
        if not isinstance(command, dict) or not isinstance(command.get("commandId"), str):
            log.warning("%s ignores a command without commandId", device.device_id)
            return
        status, detail = device.answer(command)
        ack = {"commandId": command["commandId"], "status": status, "detail": detail}
        client.publish(command_ack_topic(device.org_id, device.device_id), json.dumps(ack), qos=1)
        with self._stats_lock:
            self.stats.commands += 1
            self.stats.acks += 1

    def connect(self) -> None:
        waits = []
        for device in self.devices:
            connected = threading.Event()
            client = self._client(device, connected)
            client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=60)
            client.loop_start()
            self._clients[device.device_id] = client
            waits.append((device.device_id, connected))
        deadline = time.monotonic() + CONNECT_TIMEOUT_SECONDS
        for device_id, connected in waits:
            if not connected.wait(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(
                    f"{device_id} could not connect to {self.endpoint.host}:{self.endpoint.port}"
                )

    def _topic(self, device: SimulatedDevice) -> str:
        topic = telemetry_topic(device.org_id, device.device_id)
        return TELEMETRY_RULE.basic_ingest_prefix() + topic if self.endpoint.basic_ingest else topic

    def run(self, duration_seconds: float | None = None) -> None:
        """Publish until stopped or for ``duration_seconds``; each device keeps its interval."""
        started = time.monotonic()
        due = {
            device.device_id: started + device.rng.uniform(0, device.interval_seconds)
            for device in self.devices
        }
        while not self._stopped.is_set():
            now = time.monotonic()
            if duration_seconds is not None and now - started >= duration_seconds:
                break
            for device in self.devices:
                if due[device.device_id] > now:
                    continue
                payload = device.readings()
                self._clients[device.device_id].publish(
                    self._topic(device), json.dumps(payload), qos=self.endpoint.qos
                )
                with self._stats_lock:
                    self.stats.messages += 1
                    self.stats.readings += len(payload["readings"])
                # Keep the cadence; after a stall, resume rather than burst.
                due[device.device_id] = max(due[device.device_id] + device.interval_seconds, now)
            self._stopped.wait(max(0.0, min(due.values(), default=now + 1) - time.monotonic()))

    def start(self) -> None:
        """Connect, then publish from a background thread (the local stack's way)."""
        self.connect()
        self._thread = threading.Thread(target=self.run, name="simulator", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stopped.set()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        for client in self._clients.values():
            client.disconnect()
            client.loop_stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.simulator",
        description="Simulated sensor devices publishing over MQTT and acknowledging commands.",
    )
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOCAL_MQTT_PORT") or 1883))
    parser.add_argument("--devices", type=int, default=int(os.environ.get("SIMULATED_DEVICES") or 5))
    parser.add_argument("--orgs", default=",".join(DEFAULT_ORGS), help="comma-separated orgIds")
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second per device")
    parser.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    parser.add_argument("--seed", type=int, default=None, help="for a reproducible fleet")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--ca-file", help="CA bundle for TLS (e.g. AWS IoT's Amazon Root CA)")
    parser.add_argument("--cert-file", help="device certificate for mutual TLS")
    parser.add_argument("--key-file", help="device private key for mutual TLS")
    parser.add_argument(
        "--basic-ingest", action="store_true", help="publish to $aws/rules/<rule>/... (AWS IoT only)"
    )
    args = parser.parse_args(argv)
    if args.devices < 1 or args.rate <= 0:
        parser.error("--devices must be at least 1 and --rate positive")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    orgs = [o.strip() for o in args.orgs.split(",") if o.strip()]
    fleet = Fleet(
        build_fleet(args.devices, orgs=orgs, rate=args.rate, seed=args.seed),
        Endpoint(
            host=args.host,
            port=args.port,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            basic_ingest=args.basic_ingest,
            qos=args.qos,
        ),
    )
    signal.signal(signal.SIGTERM, lambda *_: fleet.request_stop())
    fleet.connect()
    log.info("%d devices connected to %s:%d", len(fleet.devices), args.host, args.port)
    try:
        fleet.run(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        fleet.stop()
        log.info("%s", fleet.stats.summary())


if __name__ == "__main__":
    main()
