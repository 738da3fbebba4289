"""Reading payloads as devices and gateways send them (contract section 1)."""

from __future__ import annotations

from typing import Any


def reading(unit_id: str, recorded_at: str, temperature: Any = 21.5, **fields: Any) -> dict[str, Any]:
    """A reading object in wire format; ``fields`` are further camelCase fields."""
    return {"unitId": unit_id, "temperature": temperature, "recordedAt": recorded_at, **fields}


def full_reading(unit_id: str, recorded_at: str, **overrides: Any) -> dict[str, Any]:
    """A reading with every optional field set."""
    return reading(
        unit_id,
        recorded_at,
        **{"siteId": "site-1", "humidity": 40.5, "battery": 87.0, "signalStrength": -67, **overrides},
    )
