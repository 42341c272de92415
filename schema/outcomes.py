"""What a worker decides about one payout event; stored, logged, and shown to operators."""

from enum import StrEnum

__all__ = ["Outcome"]


class Outcome(StrEnum):
    CREDITED = "credited"
    """The wallet was credited and the ledger written, in this delivery."""
    DUPLICATE = "duplicate"
    """The transaction was already recorded with the same user, amount and currency."""
    HELD_UNKNOWN_ACCOUNT = "held_unknown_account"
    """The wallet does not exist and the instance requires it to; credited once it exists."""
    CONFLICT = "conflict"
    """The transaction id reappeared with a different user, amount or currency: never credited."""
    SIGNATURE_REUSED = "signature_reused"
    """Another transaction already carried this signature (a field-boundary shift)."""
