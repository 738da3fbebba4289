"""The AWS CDK app of sensor-stream: one stack, one construct per concern."""
