"""The local stack: the whole system on 127.0.0.1 with no AWS account (``make dev``).

Each AWS service the project relies on is stood in for by a real protocol endpoint
(moto for DynamoDB, emulators for API Gateway, IoT Core and EventBridge, an embedded
MQTT broker) and the very same Lambda handlers are invoked in-process with the event
shapes AWS sends. See ``devstack/stack.py`` for the wiring.
"""
