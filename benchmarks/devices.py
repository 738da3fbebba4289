"""Devices for the live benchmark and the soak: MQTT clients (paho, QoS 1) that publish
telemetry at a fixed aggregate rate, on a schedule rather than as fast as they can.

One load process runs a share of the devices (:func:`run_devices`, started through
multiprocessing); its slots are spaced ``1 / rate`` apart from a common start time and
go round-robin over its devices. A slot that comes late (the machine is busy) is sent at
once and its lateness recorded; slots not sent by the end of the window are not sent, so
the achieved rate shows next to the target. Each reading's ``id`` carries the device,
its sequence number and the send time (accounting.reading_id).

Soak faults from the device side: every n-th message published twice (a duplicate
delivery), and every m-th message, plus one message right after each of given moments,
recorded tens of seconds ago (a late delivery).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

from paho.mqtt.client import CallbackAPIVersion, Client, MQTTErrorCode

from benchmarks.accounting import LatencyHistogram, reading_id

CONNECT_TIMEOUT_SECONDS = 30.0
ACK_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class DeviceSpec:
    index: int  # run-wide device number, the first part of its readings' ids
    device_id: str
    org_id: str
    units: tuple[str, ...]

    @property
    def topic(self) -> str:
        return f"orgs/{self.org_id}/devices/{self.device_id}/telemetry"


@dataclass(frozen=True)
class LoadPlan:
    host: str
    port: int
    devices: tuple[DeviceSpec, ...]
    messages_per_second: float
    per_message: int
    duration: float
    # Soak: publish every n-th message twice / record every n-th message late (0 = never).
    duplicate_every: int = 0
    late_every: int = 0
    late_seconds: float = 30.0
    # Seconds after the start: the first message due after each (of a device of
    # ``late_at_org`` if given) is also sent late.
    late_at: tuple[float, ...] = ()
    late_at_org: str | None = None


@dataclass
class LoadReport:
    # device index -> readings sent (ids 0..n-1 of that device)
    sent: dict[int, int] = field(default_factory=dict)
    messages: int = 0
    slots_planned: int = 0
    acked: int = 0
    publish_errors: int = 0
    duplicates_published: int = 0
    late_readings: int = 0
    # (device, seq) of the readings sent late.
    late: set[tuple[int, int]] = field(default_factory=set)
    # How late each publish came against its slot.
    lateness: LatencyHistogram = field(default_factory=LatencyHistogram)
    first_sent_at: float | None = None
    last_sent_at: float | None = None

    def merge(self, other: LoadReport) -> None:
        self.sent.update(other.sent)
        self.messages += other.messages
        self.slots_planned += other.slots_planned
        self.acked += other.acked
        self.publish_errors += other.publish_errors
        self.duplicates_published += other.duplicates_published
        self.late_readings += other.late_readings
        self.late.update(other.late)
        self.lateness.merge(other.lateness)
        firsts = [t for t in (self.first_sent_at, other.first_sent_at) if t is not None]
        lasts = [t for t in (self.last_sent_at, other.last_sent_at) if t is not None]
        self.first_sent_at = min(firsts, default=None)
        self.last_sent_at = max(lasts, default=None)

    @property
    def readings(self) -> int:
        return sum(self.sent.values())


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_payload(
    device: DeviceSpec, first_seq: int, count: int, sent_at: float, *, recorded_offset: float = 0.0
) -> dict[str, Any]:
    """``count`` readings numbered from ``first_seq``, recorded a millisecond apart and
    ending at ``sent_at - recorded_offset``; one reading goes out as the bare object."""
    readings = []
    for i in range(count):
        seq = first_seq + i
        readings.append(
            {
                "id": reading_id(device.index, seq, sent_at),
                "unitId": device.units[seq % len(device.units)],
                "temperature": round(4.0 + (seq % 50) / 10, 1),
                "humidity": 55.0,
                "battery": 90.0,
                "signalStrength": -60,
                "recordedAt": iso(sent_at - recorded_offset - (count - 1 - i) / 1000),
            }
        )
    return readings[0] if count == 1 else {"readings": readings}


class _Acks:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def on_publish(self, *args: Any) -> None:
        with self._lock:
            self.count += 1


def _connect(plan: LoadPlan, device: DeviceSpec, acks: _Acks) -> Client:
    connected = threading.Event()
    client = Client(CallbackAPIVersion.VERSION2, client_id=f"{device.device_id}-{time.time_ns() % 10**9}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_connect = lambda *args: connected.set()
    client.on_publish = acks.on_publish
    client.connect(plan.host, plan.port, keepalive=60)
    client.loop_start()
    if not connected.wait(CONNECT_TIMEOUT_SECONDS):
        raise RuntimeError(f"device {device.device_id} could not connect to {plan.host}:{plan.port}")
    return client


def run_devices(plan: LoadPlan, control: Connection) -> None:
    """Process entry: connect, say ("ready",), wait for ("start", t0), send the window,
    wait a little for the broker's acks, answer with the LoadReport."""
    acks = _Acks()
    clients = [_connect(plan, device, acks) for device in plan.devices]
    control.send(("ready",))
    command, start = control.recv()
    assert command == "start"
    report = publish_window(plan, clients, start)
    deadline = time.monotonic() + ACK_WAIT_SECONDS
    while acks.count < report.messages + report.duplicates_published and time.monotonic() < deadline:
        time.sleep(0.1)
    report.acked = acks.count
    control.send(("done", report))
    for client in clients:
        client.disconnect()
        client.loop_stop()


def publish_window(plan: LoadPlan, clients: list[Client], start: float) -> LoadReport:
    report = LoadReport(sent={device.index: 0 for device in plan.devices})
    interval = 1 / plan.messages_per_second
    end = start + plan.duration
    report.slots_planned = max(0, int(plan.duration * plan.messages_per_second - 1e-9) + 1)
    late_times = sorted(start + offset for offset in plan.late_at)
    slot = 0
    while True:
        due = start + slot * interval
        if due >= end:
            break
        now = time.time()
        if now < due:
            time.sleep(due - now)
            now = time.time()
        if now >= end:
            break
        index = slot % len(plan.devices)
        device, client = plan.devices[index], clients[index]
        late = plan.late_every > 0 and slot % plan.late_every == plan.late_every - 1
        if late_times and now >= late_times[0] and plan.late_at_org in (None, device.org_id):
            late_times.pop(0)
            late = True
        payload = build_payload(
            device,
            report.sent[device.index],
            plan.per_message,
            now,
            recorded_offset=plan.late_seconds if late else 0.0,
        )
        body = json.dumps(payload)
        if client.publish(device.topic, body, qos=1).rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            report.publish_errors += 1
        if plan.duplicate_every > 0 and slot % plan.duplicate_every == plan.duplicate_every - 1:
            client.publish(device.topic, body, qos=1)
            report.duplicates_published += 1
        report.lateness.add(now - due)
        report.sent[device.index] += plan.per_message
        report.messages += 1
        if late:
            first = report.sent[device.index] - plan.per_message
            report.late.update((device.index, seq) for seq in range(first, first + plan.per_message))
            report.late_readings += plan.per_message
        report.first_sent_at = report.first_sent_at or now
        report.last_sent_at = now
        slot += 1
    return report
