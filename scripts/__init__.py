"""Operator scripts: make smoke (scripts/smoke.py)."""
