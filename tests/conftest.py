"""Test-wide setup: tests never reach real AWS; property tests are deterministic."""

import os

from hypothesis import settings

from devstack.moto_fidelity import emulate_partiql_inserts

# Set before any boto3 client exists; setdefault would let a developer's real profile leak in.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-west-1",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "POWERTOOLS_SERVICE_NAME": "sensor-stream",
        "POWERTOOLS_METRICS_NAMESPACE": "SensorStream",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
    }
)
os.environ.pop("AWS_PROFILE", None)

# The same examples on every run (CI, and a failure reproduces locally), a bounded number
# of them, no example database written into the checkout, and no per-example deadline
# (the machine is shared: timing says nothing). HYPOTHESIS_PROFILE=explore searches wider.
settings.register_profile("ci", derandomize=True, max_examples=100, deadline=None, database=None)
settings.register_profile("explore", max_examples=2000, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# moto cannot run PartiQL INSERTs in a batch; DynamoDB's behaviour, as the local stack has it.
emulate_partiql_inserts()
