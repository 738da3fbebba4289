"""Throttling of the two APIs, declared once: the CDK stack configures API Gateway's
stages with these numbers and the local stack's emulators enforce the same token buckets.

API Gateway throttles per stage with a token bucket: ``RATE_LIMIT`` tokens a second
refill it and it holds at most ``BURST_LIMIT``; a request that finds it empty is refused
(429 over HTTP; over a WebSocket, an error message on the connection).
"""

# WebSocket API stage, across all clients: a dashboard sends a handful of messages.
WEBSOCKET_THROTTLE_RATE_LIMIT = 500
WEBSOCKET_THROTTLE_BURST_LIMIT = 1000
# HTTP API stage (POST /readings from gateways and backfills).
HTTP_THROTTLE_RATE_LIMIT = 200
HTTP_THROTTLE_BURST_LIMIT = 400
