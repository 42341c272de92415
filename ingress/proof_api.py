"""Spec 002: the Payout Proof API, `POST payout/api/proof/get_data.php` with `X-API-KEY` and
`signature = SHA256(pid + secret + order_id)`: one payout's status and proof images.

Every error is the spec's own message and status, checked in the spec's order. The key is checked
before the pid, so a caller without a valid key learns nothing about which partners exist; a
partner asking for another partner's transaction gets exactly "Transaction not found".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse

from ingress import metrics
from ingress.bodies import parse_json_object, read_body
from ingress.fields import is_storable_id
from ingress.receipts import Receipt, data_uri, render_receipt
from ingress.rotated_secrets import matching_secret
from ingress.verdicts import Rejection
from schema.errors import DatabaseUnavailable
from schema.logs import log
from schema.settings import read_secrets

if TYPE_CHECKING:
    from collections.abc import Mapping

    import asyncpg
    from starlette.responses import Response
    from starlette.types import Receive, Scope, Send

    from ingress.database import IngressDatabase
    from schema.settings import Partner, Settings

__all__ = ["ProofEndpoint"]

logger = logging.getLogger(__name__)

REQUIRED_FIELDS = ("pid", "order_id", "signature")
NOT_FOUND = "Transaction not found"
UNAVAILABLE = "Service temporarily unavailable"

FIND_PAYOUT = """
SELECT p.payout_id, p.provider_instance, p.transaction_id, p.user_id, p.amount, p.currency,
       p.status, p.items, p.price, p.recorded_at, p.credited_at,
       ARRAY(SELECT e.entry_id FROM ledger_entries e
             WHERE e.payout_id = p.payout_id ORDER BY e.entry_id) AS ledger_entry_ids
FROM payouts p
WHERE p.transaction_id = $1 AND p.provider_instance = ANY($2::text[])
ORDER BY p.recorded_at DESC
LIMIT 1
"""

ATTACHED_IMAGES = """
SELECT media_type, data FROM proof_images WHERE payout_id = $1 ORDER BY image_id
"""

WAS_REFUSED = """
SELECT EXISTS (SELECT 1 FROM payout_conflicts
               WHERE transaction_id = $1 AND provider_instance = ANY($2::text[]))
"""

IS_DEAD_LETTERED = """
SELECT EXISTS (SELECT 1 FROM dead_letters
               WHERE transaction_id = $1 AND provider_instance = ANY($2::text[])
                 AND status = 'dead_lettered')
"""

# Our records, in the partner's words (docs/protocols.md).
APPROVED, PENDING, REJECTED, FAILED = "Approved", "Pending", "Rejected", "Failed"
PAYOUT_STATUS = {"credited": APPROVED, "held": PENDING}


@dataclass(frozen=True)
class _Partner:
    pid: str
    # Environment variable name -> value, several while one is rotated.
    api_keys: dict[str, str]
    secrets: dict[str, str]
    provider_instances: tuple[str, ...]

    @classmethod
    def from_settings(cls, partner: Partner, environ: Mapping[str, str]) -> _Partner:
        def values(names: tuple[str, ...]) -> dict[str, str]:
            owner = f"partner {partner.pid!r}"
            return read_secrets(environ, names, owner, "you gave the partner")

        return cls(
            pid=partner.pid,
            api_keys=values(partner.api_key_env),
            secrets=values(partner.secret_env),
            provider_instances=partner.provider_instances,
        )

    def key_holding(self, api_key: str) -> str | None:
        """The name of the API key that `api_key` is, if any."""
        return matching_secret(self.api_keys, api_key)

    def secret_signing(self, order_id: str, signature: str) -> str | None:
        """The name of the secret under which `signature` signs `order_id`, if any."""
        return matching_secret(
            self.secrets,
            signature,
            lambda secret: hashlib.sha256(f"{self.pid}{secret}{order_id}".encode()).hexdigest(),
        )


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> Response:
    return JSONResponse({"status": "error", "message": message}, status_code=status)


class ProofEndpoint:
    """A plain ASGI app, so any method gets an answer in the spec's error format."""

    def __init__(
        self, settings: Settings, database: IngressDatabase, environ: Mapping[str, str]
    ) -> None:
        self._partners = [_Partner.from_settings(p, environ) for p in settings.partners]
        self._database = database
        self._max_body_bytes = settings.ingress.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        try:
            response = await self._answer(request)
        except Exception:
            # Never a 500, and never a traceback for the partner: the spec's format, "retry".
            logger.exception("unexpected error answering a proof request")
            response = _error(503, UNAVAILABLE)
        metrics.PROOF_API_REQUESTS.labels(str(response.status_code)).inc()
        return response

    async def _answer(self, request: Request) -> Response:
        if request.method != "POST":
            return _error(405, "Method not allowed")
        try:
            partner, order_id = await self._authenticate(request)
        except _Refused as refused:
            log(logger, logging.INFO, "proof request refused", reason=refused.message)
            return _error(refused.status, refused.message)
        if not is_storable_id(order_id):
            return _error(200, NOT_FOUND)  # nothing we record can have this id
        try:
            async with self._database.connection() as conn:
                found = await self._lookup(conn, partner, order_id)
        except DatabaseUnavailable as error:
            log(logger, logging.WARNING, "proof API: database unavailable", error=str(error))
            return _error(503, UNAVAILABLE)
        log(
            logger,
            logging.INFO,
            "proof request answered",
            partner=partner.pid,  # `pid` names the process that wrote the line
            order_id=order_id,
            transaction_status=found[0] if found else None,
        )
        if found is None:
            return _error(200, NOT_FOUND)
        transaction_status, images = found
        return JSONResponse(
            {
                "status": "success",
                "order_id": order_id,
                "transaction_status": transaction_status,
                "proof_images": images,
            }
        )

    async def _authenticate(self, request: Request) -> tuple[_Partner, str]:
        try:
            body = parse_json_object(await read_body(request, self._max_body_bytes))
        except Rejection:
            raise _Refused(400, "Invalid request data") from None
        values: dict[str, str] = {}
        for name in REQUIRED_FIELDS:
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                raise _Refused(400, "Invalid request data")
            if not value:
                raise _Refused(400, f"{name} not provided")
            values[name] = value
        api_key = request.headers.get("x-api-key", "")
        if not api_key:
            raise _Refused(401, "API key not provided")
        if not any(partner.key_holding(api_key) for partner in self._partners):
            raise _Refused(401, "Invalid API key")
        partner = next((p for p in self._partners if p.pid == values["pid"]), None)
        if partner is None:
            raise _Refused(200, "Invalid user")
        key_name = partner.key_holding(api_key)
        if key_name is None:
            raise _Refused(401, "Invalid API key")
        secret_name = partner.secret_signing(values["order_id"], values["signature"])
        if secret_name is None:
            raise _Refused(401, "Verification failed")
        metrics.PROOF_API_KEY_MATCHES.labels(partner.pid, key_name, secret_name).inc()
        return partner, values["order_id"]

    async def _lookup(
        self, conn: asyncpg.pool.PoolConnectionProxy, partner: _Partner, order_id: str
    ) -> tuple[str, list[str]] | None:
        instances = list(partner.provider_instances)
        row = await conn.fetchrow(FIND_PAYOUT, order_id, instances)
        if row is None:
            if await conn.fetchval(WAS_REFUSED, order_id, instances):
                return REJECTED, []
            if await conn.fetchval(IS_DEAD_LETTERED, order_id, instances):
                return FAILED, []
            return None
        status = PAYOUT_STATUS[row["status"]]
        receipt = Receipt(
            payout_id=row["payout_id"],
            provider_instance=row["provider_instance"],
            transaction_id=row["transaction_id"],
            user_id=row["user_id"],
            amount=row["amount"],
            currency=row["currency"],
            status=status,
            recorded_at=row["recorded_at"],
            credited_at=row["credited_at"],
            ledger_entry_ids=tuple(row["ledger_entry_ids"]),
            items=tuple(json.loads(row["items"])),
            price=row["price"],
        )
        # Rendering is CPU work (cached per receipt); keep it off the event loop.
        images = [data_uri("image/png", await asyncio.to_thread(render_receipt, receipt))]
        for attached in await conn.fetch(ATTACHED_IMAGES, row["payout_id"]):
            images.append(data_uri(attached["media_type"], attached["data"]))
        return status, images
