"""A payout's raw request as operators are shown it: device ids masked as the ingress stores
them (ingress/device_ids.py), also for an instance that keeps them as sent (`store_device_ids`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ingress.device_ids import masked_fields
from ingress.protocols import protocol_class

if TYPE_CHECKING:
    from schema.settings import Settings

__all__ = ["WITHHELD", "shown_request"]

# In place of the query string and body of a record whose instance is no longer configured.
WITHHELD = (
    "withheld: its provider instance is no longer configured, so which parameters identify "
    "a device is unknown"
)


def shown_request(settings: Settings, record: dict[str, Any]) -> dict[str, Any]:
    """`record` (a payout or a refused delivery, with its `raw_request` and, for a payout, its
    `attributes`) with the device ids its instance's protocol names masked."""
    instance = next(
        (each for each in settings.providers if each.name == record["provider_instance"]), None
    )
    if instance is not None and not instance.store_device_ids:
        # The ingress masked them before storing; masking again would hash the hashes.
        return record
    raw = dict(record["raw_request"])
    if instance is None:
        return {
            **record,
            "raw_request": {**raw, "query_string": WITHHELD, "body": None},
            **({"attributes": {}} if "attributes" in record else {}),
        }
    # No secret is needed to know which parameters a protocol reads as device ids.
    protocol = protocol_class(instance.protocol)(instance, {})
    attributes, query = masked_fields(
        protocol, record.get("attributes") or {}, raw.get("query_string", "")
    )
    shown = {**record, "raw_request": {**raw, "query_string": query}}
    if "attributes" in record:
        shown["attributes"] = attributes
    return shown
