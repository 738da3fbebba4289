"""web/sensor-stream-client.js in headless Chromium against a scripted contract peer.

The peer is a real WebSocket server (``websockets``) that answers as contract section 3
says and lets a test drop connections, refuse handshakes or hold back answers: the cases
the full local stack cannot produce on demand.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.support.browser import debian_chromium
from tests.support.contract_peer import (
    SUBPROTOCOL,
    ContractPeer,
    WebServer,
    batch,
    fake_jwt,
    iso_ago,
    reading,
    wait_until,
)

pytestmark = pytest.mark.browser

VALID_TOKEN = fake_jwt({"sub": "tester", "org": "acme", "exp": int(time.time()) + 3600})


@pytest.fixture(scope="module")
def web_origin() -> Iterator[str]:
    server = WebServer()
    yield server.origin
    server.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from debian_chromium()


@pytest.fixture
def peer() -> Iterator[ContractPeer]:
    contract_peer = ContractPeer()
    contract_peer.start()
    yield contract_peer
    contract_peer.stop()


@pytest.fixture
def page(browser: Browser, web_origin: str) -> Iterator[Page]:
    context = browser.new_context()
    harness = context.new_page()
    # Any page really served from loopback (a 404 does): the module imports as in the dashboard,
    # and Chromium's local network access checks let a loopback page reach the loopback peer.
    harness.goto(f"{web_origin}/harness")
    yield harness
    context.close()


def start_client(
    page: Page, url: str, token: str = VALID_TOKEN, *, tokens: list[str] | None = None, **options: Any
) -> None:
    """Create ``window.client`` with short retry delays; its events collect in ``window.events``.
    With ``tokens``, its token option is a function handing them out in turn."""
    page.evaluate(
        """async ({ url, token, tokens, options }) => {
            const { SensorStreamClient } = await import("/sensor-stream-client.js");
            const fast = { minRetryDelayMs: 50, maxRetryDelayMs: 200 };
            const next = async () => (tokens.length > 1 ? tokens.shift() : tokens[0]);
            const client = new SensorStreamClient({ url, token: tokens ? next : token, ...fast, ...options });
            window.client = client;
            window.events = [];
            for (const type of ["status", "readings", "subscription", "error"]) {
                client.addEventListener(type, (event) => window.events.push({ type, detail: event.detail }));
            }
            client.connect();
        }""",
        {"url": url, "token": token, "tokens": tokens, "options": options},
    )


def events(page: Page, event_type: str) -> list[Any]:
    return page.evaluate(
        "(type) => window.events.filter((e) => e.type === type).map((e) => e.detail)", event_type
    )


def statuses(page: Page) -> list[str]:
    return [detail["status"] for detail in events(page, "status")]


def wait_for_status(page: Page, status: str, count: int = 1) -> None:
    wait_until(lambda: statuses(page).count(status) >= count, f"status {status!r} x{count}")


def call(page: Page, expression: str) -> Any:
    """Await ``expression`` in the page; a rejection comes back as ``{"rejected": {code, message}}``."""
    return page.evaluate(
        f"""async () => {{
            try {{ return {{ resolved: await ({expression}) }}; }}
            catch (error) {{ return {{ rejected: {{ code: error.code, message: error.message }} }}; }}
        }}"""
    )


def test_connects_with_the_token_as_subprotocol_and_says_hello(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url)
    wait_for_status(page, "connected")

    (request,) = peer.handshakes
    assert request.headers["Sec-WebSocket-Protocol"] == f"{SUBPROTOCOL}, bearer.{VALID_TOKEN}"
    assert request.path == "/"
    (hello,) = peer.messages("hello")
    assert "resume" not in hello
    assert hello["requestId"]
    assert statuses(page) == ["connecting", "connected"]
    assert page.evaluate("window.client.connectionId") == "conn-1"
    assert events(page, "subscription") == [{"scope": "org", "unitIds": [], "siteIds": []}]


def test_a_refused_handshake_ends_in_unauthorized_without_retrying_forever(
    page: Page, peer: ContractPeer
) -> None:
    peer.refuse_handshakes = True
    start_client(page, peer.url, maxRefusals=2)
    wait_for_status(page, "unauthorized")

    assert len(peer.handshakes) == 2
    assert statuses(page) == ["connecting", "reconnecting", "reconnecting", "unauthorized"]
    # Many retry delays (at most 200 ms here) later, nothing was tried again.
    time.sleep(1.5)
    assert len(peer.handshakes) == 2
    assert call(page, "window.client.getLatest('u1')") == {
        "rejected": {"code": "not_connected", "message": "not connected (unauthorized)"}
    }


def test_an_expired_token_is_not_even_offered(page: Page, peer: ContractPeer) -> None:
    expired = fake_jwt({"sub": "tester", "org": "acme", "exp": int(time.time()) - 60})
    start_client(page, peer.url, token=expired)
    wait_for_status(page, "unauthorized")

    assert peer.handshakes == []
    assert events(page, "status")[-1]["reason"] == "the token has expired"


def test_reconnects_and_resumes_from_the_newest_reading_without_duplicates(
    page: Page, peer: ContractPeer
) -> None:
    start_client(page, peer.url, resumeOverlapMs=0)
    wait_for_status(page, "connected")
    first = reading("r1", "u1", "2026-01-01T00:00:01.000Z", "2026-01-01T00:00:01.200Z")
    # A device clock running ahead: its receivedAt (server time) is the earlier of the two.
    ahead = reading("r2", "u2", "2026-01-01T00:04:00.000Z", "2026-01-01T00:00:02.300Z")
    peer.push(batch([first, ahead]))
    wait_until(lambda: events(page, "readings"), "the first readings")

    missed = reading("r3", "u1", "2026-01-01T00:00:03.000Z")
    peer.replay = [ahead, missed]  # the replay overlaps what the client has
    peer.drop()
    wait_for_status(page, "connected", count=2)
    wait_until(lambda: len(events(page, "readings")) >= 2, "the replayed readings")

    second_hello = peer.messages("hello")[1]
    assert second_hello["resume"] == {"since": "2026-01-01T00:00:02.300Z"}
    assert len(peer.handshakes) == 2
    assert statuses(page)[:3] == ["connecting", "connected", "reconnecting"]
    live, replayed = events(page, "readings")
    assert [r["id"] for r in live["readings"]] == ["r1", "r2"]
    assert live["replay"] is False
    assert [r["id"] for r in replayed["readings"]] == ["r3"]
    assert replayed["replay"] is True


def test_the_subscription_is_restored_after_a_reconnect(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url)
    wait_for_status(page, "connected")
    answer = call(page, "window.client.subscribe({ unitIds: ['u1'] })")
    assert answer == {"resolved": {"scope": "selected", "unitIds": ["u1"], "siteIds": []}}

    peer.drop()
    wait_until(lambda: len(peer.messages("subscribe")) == 2, "the subscription to be restored")
    assert peer.messages("subscribe")[1]["unitIds"] == ["u1"]
    wait_until(lambda: len(events(page, "subscription")) == 3, "the restored subscription")
    assert events(page, "subscription")[-1]["unitIds"] == ["u1"]

    # Whatever the server still sends outside the selection is not surfaced.
    peer.push(batch([reading("other", "u2", "2026-01-01T00:00:05.000Z")]))
    peer.push(batch([reading("mine", "u1", "2026-01-01T00:00:05.000Z")]))
    wait_until(lambda: events(page, "readings"), "readings")
    assert [r["id"] for detail in events(page, "readings") for r in detail["readings"]] == ["mine"]


def test_readings_are_deduplicated_with_bounded_memory(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url, maxRememberedIds=2)
    wait_for_status(page, "connected")
    a, b, c = (reading(i, "u1", f"2026-01-01T00:00:0{n}.000Z") for n, i in enumerate("abc", start=1))
    peer.push(batch([a, b]))
    peer.push(batch([b]))  # a repeat: not surfaced
    peer.push(batch([c]))  # remembering c forgets a, the oldest
    peer.push(batch([a]))
    wait_until(lambda: len(events(page, "readings")) >= 3, "three fresh batches")
    assert [[r["id"] for r in detail["readings"]] for detail in events(page, "readings")] == [
        ["a", "b"],
        ["c"],
        ["a"],
    ]


def test_get_latest_resolves_with_the_reading_or_times_out(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url, requestTimeoutMs=300)
    wait_for_status(page, "connected")
    answer = call(page, "window.client.getLatest('u7')")
    assert answer["resolved"]["unitId"] == "u7"

    peer.answer_get_latest = False
    assert call(page, "window.client.getLatest('u7')")["rejected"]["code"] == "timeout"


@pytest.mark.parametrize("outcome", ["ack", "ack-before-accepted"])
def test_send_command_resolves_with_the_ack(page: Page, peer: ContractPeer, outcome: str) -> None:
    peer.command_outcome = outcome
    start_client(page, peer.url)
    wait_for_status(page, "connected")
    result = page.evaluate(
        """async () => {
            const accepted = [];
            const ack = await window.client.sendCommand("dev-1", "blink", { times: 2 }, {
                onAccepted: (commandId) => accepted.push(commandId),
            });
            return { ack, accepted };
        }"""
    )
    assert result["ack"]["status"] == "ok"
    assert result["accepted"] == [result["ack"]["commandId"]]
    (sent,) = peer.messages("sendCommand")
    assert sent["deviceId"] == "dev-1"
    assert sent["command"] == "blink"
    assert sent["params"] == {"times": 2}


@pytest.mark.parametrize(
    ("outcome", "code"),
    [("error", "command_failed"), ("timeout", "command_timeout"), ("unknown-device", "not_found")],
)
def test_send_command_rejects_when_the_command_fails(
    page: Page, peer: ContractPeer, outcome: str, code: str
) -> None:
    peer.command_outcome = outcome
    start_client(page, peer.url)
    wait_for_status(page, "connected")
    assert call(page, "window.client.sendCommand('dev-1', 'blink')")["rejected"]["code"] == code


def test_errors_no_request_claims_reach_the_caller_as_events(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url)
    wait_for_status(page, "connected")
    peer.push({"type": "error", "error": {"code": "throttled", "message": "slow down"}})
    wait_until(lambda: events(page, "error"), "the error event")
    assert events(page, "error") == [{"code": "throttled", "message": "slow down"}]


def test_pending_requests_fail_when_the_connection_drops(page: Page, peer: ContractPeer) -> None:
    peer.answer_get_latest = False
    start_client(page, peer.url)
    wait_for_status(page, "connected")
    page.evaluate("() => { window.pending = window.client.getLatest('u1').catch((error) => error.code); }")
    wait_until(lambda: peer.messages("getLatest"), "the request")
    peer.drop()
    assert page.evaluate("window.pending") == "disconnected"


def test_a_connection_the_server_forgot_is_replaced(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url)
    wait_for_status(page, "connected")
    forgotten = {"code": "unauthorized", "message": "this connection is not registered; reconnect"}
    peer.push({"type": "error", "error": forgotten})
    wait_for_status(page, "connected", count=2)
    assert len(peer.handshakes) == 2


def test_a_token_function_extends_the_session_before_the_token_expires(
    page: Page, peer: ContractPeer
) -> None:
    short = fake_jwt({"sub": "tester", "org": "acme", "exp": int(time.time()) + 3})
    fresh = fake_jwt({"sub": "tester", "org": "acme", "exp": int(time.time()) + 3600})
    start_client(page, peer.url, tokens=[short, fresh], refreshAheadMs=2500)
    wait_for_status(page, "connected")

    wait_until(lambda: peer.messages("refreshToken"), "a refreshToken request")

    assert peer.messages("refreshToken")[0]["token"] == fresh
    assert len(peer.handshakes) == 1  # the same connection, extended
    assert events(page, "error") == []


def test_a_session_ended_at_token_expiry_reconnects_with_a_fresh_token_and_resumes(
    page: Page, peer: ContractPeer
) -> None:
    first = fake_jwt({"sub": "tester", "org": "acme", "exp": int(time.time()) + 3600})
    second = fake_jwt({"sub": "tester", "org": "acme", "exp": int(time.time()) + 7200})
    start_client(page, peer.url, tokens=[first, second], refreshAheadMs=0)
    wait_for_status(page, "connected")
    peer.push(batch([reading("r1", "u1", "2026-01-01T00:00:01.000Z")]))
    wait_until(lambda: events(page, "readings"), "the first reading")

    # What the flush does when a token expires: says so, then closes the connection.
    peer.push({"type": "error", "error": {"code": "token_expired", "message": "your token expired"}})
    peer.drop()
    wait_for_status(page, "connected", count=2)

    assert peer.handshakes[1].headers["Sec-WebSocket-Protocol"] == f"{SUBPROTOCOL}, bearer.{second}"
    assert peer.messages("hello")[1]["resume"] == {"since": "2025-12-31T23:59:56.000Z"}


# --- Liveness: heartbeat, dead connections, recovery ------------------------------------------


def test_a_quiet_connection_is_checked_with_ping_and_stays_connected(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url, heartbeatIntervalMs=300, heartbeatTimeoutMs=1000)
    wait_for_status(page, "connected")

    wait_until(lambda: len(peer.messages("ping")) >= 2, "two heartbeats")
    assert statuses(page) == ["connecting", "connected"]
    assert len(peer.handshakes) == 1
    # What the server said its time was: the client's notion of the server's clock.
    assert abs(page.evaluate("window.client.serverNow() - Date.now()")) < 1000
    assert abs(page.evaluate("window.client.lastContactAt - window.client.serverNow()")) < 1500


def test_messages_count_as_a_heartbeat(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url, heartbeatIntervalMs=600)
    wait_for_status(page, "connected")
    for n in range(8):
        peer.push(batch([reading(f"r{n}", "u1", iso_ago(0))]))
        time.sleep(0.2)
    assert peer.messages("ping") == []


def test_a_frozen_server_is_detected_by_the_heartbeat_and_left(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url, heartbeatIntervalMs=300, heartbeatTimeoutMs=700, requestTimeoutMs=1000)
    wait_for_status(page, "connected")
    peer.frozen = True

    wait_for_status(page, "reconnecting")
    reasons = [detail.get("reason", "") for detail in events(page, "status")]
    assert any("stopped answering" in reason for reason in reasons), reasons

    peer.frozen = False
    wait_for_status(page, "connected", count=2)


def test_the_client_is_back_within_two_seconds_of_the_server(page: Page, peer: ContractPeer) -> None:
    # Default backoff: after a few failures the next scheduled retry is many seconds away.
    start_client(page, peer.url, minRetryDelayMs=1000, maxRetryDelayMs=30000)
    wait_for_status(page, "connected")
    peer.stop()
    wait_for_status(page, "reconnecting")
    time.sleep(6)
    assert statuses(page)[-1] == "reconnecting"

    peer.start()
    back = time.monotonic()
    wait_for_status(page, "connected", count=2)
    assert time.monotonic() - back < 2.0


def test_retry_now_and_the_browsers_hints_cut_the_wait_short(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url, minRetryDelayMs=60_000, maxRetryDelayMs=60_000, probeIntervalMs=60_000)
    wait_for_status(page, "connected")
    peer.stop()
    wait_until(lambda: events(page, "status")[-1].get("retryAt"), "a scheduled retry")
    waiting = events(page, "status")[-1]
    assert waiting["status"] == "reconnecting"
    assert waiting["retryAt"] - page.evaluate("Date.now()") > 1000  # a countdown to show

    peer.start()
    page.evaluate("window.client.retryNow()")
    wait_for_status(page, "connected", count=2)

    for hint in [
        "window.dispatchEvent(new Event('online'))",
        "document.dispatchEvent(new Event('visibilitychange'))",
    ]:
        connected = statuses(page).count("connected")
        peer.drop()
        wait_until(lambda: events(page, "status")[-1].get("retryAt"), "a scheduled retry")
        page.evaluate(hint)
        wait_for_status(page, "connected", count=connected + 1)


def test_close_removes_the_window_and_document_listeners(page: Page, peer: ContractPeer) -> None:
    cdp = page.context.new_cdp_session(page)

    def listeners(expression: str) -> list[str]:
        target = cdp.send("Runtime.evaluate", {"expression": expression})["result"]["objectId"]
        found = cdp.send("DOMDebugger.getEventListeners", {"objectId": target})["listeners"]
        return sorted(listener["type"] for listener in found)

    before = listeners("window"), listeners("document")
    start_client(page, peer.url)
    wait_for_status(page, "connected")
    assert "online" in listeners("window")
    assert "visibilitychange" in listeners("document")

    page.evaluate("window.client.close()")
    assert (listeners("window"), listeners("document")) == before


def test_the_first_hello_resumes_the_last_minutes(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url, initialResumeMs=300_000)
    wait_for_status(page, "connected")
    (hello,) = peer.messages("hello")
    since = hello["resume"]["since"]
    assert iso_ago(305) < since < iso_ago(295)


def test_token_expiry_is_judged_on_the_servers_clock(page: Page, peer: ContractPeer) -> None:
    # This browser's clock is two hours behind the server's: the token looks valid to it.
    peer.clock_offset = timedelta(hours=2)
    token = fake_jwt({"sub": "tester", "org": "acme", "exp": int(time.time()) + 3600})
    start_client(page, peer.url, token=token)
    wait_for_status(page, "connected")
    offset_ms = page.evaluate("window.client.clockOffsetMs")
    assert abs(offset_ms - 7_200_000) < 1000

    peer.drop()
    wait_for_status(page, "unauthorized")
    assert events(page, "status")[-1]["reason"] == "the token has expired"
    assert len(peer.handshakes) == 1


def test_requests_beyond_the_servers_rate_wait_for_their_turn(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url, maxRequestsPerWindow=3, requestWindowMs=1000)
    wait_for_status(page, "connected")
    started = time.monotonic()
    answers = call(page, "Promise.all(['a', 'b', 'c', 'd', 'e'].map((u) => window.client.getLatest(u)))")
    assert len(answers["resolved"]) == 5
    assert time.monotonic() - started >= 0.9
    assert events(page, "error") == []


def test_get_history_and_ping_answer(page: Page, peer: ContractPeer) -> None:
    peer.history = {"u1": [reading(f"h{n}", "u1", iso_ago(60 - n)) for n in range(5)]}
    start_client(page, peer.url)
    wait_for_status(page, "connected")
    history = call(
        page, "window.client.getHistory('u1', { since: new Date(Date.now() - 120000).toISOString() })"
    )
    assert [r["id"] for r in history["resolved"]["readings"]] == ["h0", "h1", "h2", "h3", "h4"]
    assert history["resolved"]["more"] is False
    assert call(page, "window.client.ping()")["resolved"].endswith("Z")


def test_an_answer_in_parts_resolves_once_whole_in_order(page: Page, peer: ContractPeer) -> None:
    peer.history = {"u1": [reading(f"h{n}", "u1", iso_ago(60 - n)) for n in range(7)]}
    peer.history_parts, peer.parts_reversed = 3, True
    start_client(page, peer.url)
    wait_for_status(page, "connected")

    history = call(
        page, "window.client.getHistory('u1', { since: new Date(Date.now() - 120000).toISOString() })"
    )

    assert [r["id"] for r in history["resolved"]["readings"]] == [f"h{n}" for n in range(7)]
    assert "part" not in history["resolved"]
    assert "parts" not in history["resolved"]
