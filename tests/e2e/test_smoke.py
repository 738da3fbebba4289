"""``make smoke`` against the local stack, with only the endpoints changed: the ready
line's WebSocket, HTTP and MQTT URLs and a local token instead of the stage's outputs,
IoT endpoint and a Cognito user. The CloudWatch and SNS steps have no local counterpart
and must say that they were skipped (tests/unit/test_smoke_aws.py covers them on moto)."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.conftest import REPOSITORY_ROOT, LocalStack, unique


def _smoke(
    stack: LocalStack, *extra: str, token: str | None = None, org: str
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "scripts.smoke",
        "--websocket-url",
        stack.websocket_url,
        "--http-url",
        stack.http_url,
        "--mqtt-url",
        stack.mqtt_url,
        "--token",
        token or stack.token(org),
        "--org",
        org,
        *extra,
    ]
    return subprocess.run(command, cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=180)  # noqa: S603


def test_smoke_passes_end_to_end_on_the_local_stack(local_stack: LocalStack) -> None:
    org = unique("smoke")

    result = _smoke(local_stack, org=org)

    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    statuses = {line.split(":")[0] for line in lines if line.startswith(("PASS", "FAIL", "SKIP"))}
    assert statuses == {"PASS websocket", "PASS device", "PASS http", "SKIP metrics", "SKIP alarm"}
    assert any(
        line.startswith(f"PASS device: orgs/{org}/devices/{org}-device/telemetry -> browser")
        for line in lines
    )
    assert "SKIP alarm: no --stage: CloudWatch alarms and the SNS topic are AWS only" in lines
    assert lines[-1] == "smoke OK: 3 checks passed, 0 failed, 2 skipped"


def test_smoke_fails_when_the_browser_is_refused(local_stack: LocalStack) -> None:
    org = unique("smoke")

    result = _smoke(local_stack, org=org, token="not-a-token")

    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith("FAIL websocket: ")
    assert result.stdout.splitlines()[-1] == "smoke FAILED: 0 checks passed, 1 failed, 0 skipped"
