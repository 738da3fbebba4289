"""The local stack: the whole system on 127.0.0.1 with no AWS account (``make dev``).

Each AWS service the project relies on is stood in for by a real protocol endpoint
(moto for DynamoDB, emulators for API Gateway, IoT Core and EventBridge, an MQTT
broker) and the very same Lambda handlers run in execution environments (worker
processes, a pool per function) with the events AWS sends. See ``devstack/stack.py``
for the wiring and ``devstack/README.md`` for the layout.
"""
