"""Shared domain package of sensor-stream: models, settings, data access and logic.

Every Lambda function in ``functions/`` imports from here; a function folder holds
only its thin handler.
"""
