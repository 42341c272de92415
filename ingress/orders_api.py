"""The game server's internal API: register, look up and cancel the pending orders that payouts
must match (docs/orders.md). Authenticated by a bearer token; never for providers' eyes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.responses import JSONResponse
from starlette.routing import Route

from ingress.bodies import parse_json_object, read_body
from ingress.client_ip import is_allowed, request_address
from ingress.fields import is_storable_id
from ingress.order_terms import OrderRefused, checked_order
from ingress.pending_orders import cancel_order, find_order, register_order
from ingress.rotated_secrets import matching_secret
from ingress.verdicts import Rejection
from schema.errors import DatabaseUnavailable
from schema.events import decimal_text
from schema.logs import log
from schema.orders import RegisterResult
from schema.settings import read_secrets

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request
    from starlette.responses import Response

    from ingress.database import IngressDatabase
    from schema.orders import Order
    from schema.settings import Settings

__all__ = ["order_routes"]

logger = logging.getLogger(__name__)


class _Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider_instance: str
    order_id: str
    user_id: str
    items: list[str] | None = None
    # Text only: a JSON number arrives as its text (ingress.bodies), never as a float.
    amount: str | None = None


def _order_json(order: Order) -> dict[str, object]:
    return {
        "provider_instance": order.provider_instance,
        "order_id": order.order_id,
        "user_id": order.user_id,
        "items": list(order.items) if order.items is not None else None,
        "amount": decimal_text(order.amount) if order.amount is not None else None,
        "status": order.status.value,
        "registered_at": order.registered_at.isoformat() if order.registered_at else None,
        "consumed_by_payout": order.consumed_by,
    }


def _error(status: int, error: str, detail: str) -> Response:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


class OrdersApi:
    def __init__(
        self, settings: Settings, database: IngressDatabase, environ: Mapping[str, str]
    ) -> None:
        self._settings = settings
        self._database = database
        self._tokens = read_secrets(
            environ, settings.internal_api.token_env, "internal_api", "you give the game server"
        )

    def _refusal(self, request: Request) -> Response | None:
        address = request_address(request, self._settings.ingress.trusted_proxies)
        if not is_allowed(address, self._settings.internal_api.ip_allowlist):
            return _error(403, "forbidden", f"address {address} is not allowed")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        valid = scheme.lower() == "bearer" and matching_secret(self._tokens, token) is not None
        if not valid:
            return _error(401, "unauthorized", "send Authorization: Bearer <token>")
        return None

    async def register(self, request: Request) -> Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        try:
            body = parse_json_object(
                await read_body(request, self._settings.ingress.max_body_bytes)
            )
            registration = _Registration.model_validate(body)
            order = checked_order(self._settings, **registration.model_dump())
        except Rejection as rejection:
            return _error(400, "invalid_request", rejection.detail)
        except ValidationError as error:
            return _error(400, "invalid_request", str(error))
        except OrderRefused as error:
            return _error(400, "invalid_order", str(error))
        try:
            async with self._database.connection() as conn:
                result, stored = await register_order(conn, order)
        except DatabaseUnavailable as error:
            return self._unavailable(error)
        log(
            logger,
            logging.INFO,
            "order registration",
            provider_instance=order.provider_instance,
            order_id=order.order_id,
            result=result.value,
        )
        if result is RegisterResult.CONFLICT:
            return JSONResponse(
                {
                    "error": "conflict",
                    "detail": "another order is registered under this id",
                    "order": _order_json(stored),
                },
                status_code=409,
            )
        status = 201 if result is RegisterResult.REGISTERED else 200
        return JSONResponse(
            {"status": result.value, "order": _order_json(stored)}, status_code=status
        )

    def _order_key(self, request: Request) -> tuple[str, str] | Response:
        """The order a GET or DELETE names, or the answer that refuses the request."""
        if (refusal := self._refusal(request)) is not None:
            return refusal
        instance, order_id = request.path_params["instance"], request.path_params["order_id"]
        if not (is_storable_id(instance) and is_storable_id(order_id)):
            return _error(404, "not_found", "no order can have that id")
        return instance, order_id

    async def show(self, request: Request) -> Response:
        key = self._order_key(request)
        if not isinstance(key, tuple):
            return key
        instance, order_id = key
        try:
            async with self._database.connection() as conn:
                order = await find_order(conn, instance, order_id)
        except DatabaseUnavailable as error:
            return self._unavailable(error)
        if order is None:
            return _error(404, "not_found", f"no order {order_id!r} for {instance!r}")
        return JSONResponse({"order": _order_json(order)})

    async def cancel(self, request: Request) -> Response:
        key = self._order_key(request)
        if not isinstance(key, tuple):
            return key
        instance, order_id = key
        try:
            async with self._database.connection() as conn, conn.transaction():
                cancelled = await cancel_order(conn, instance, order_id)
                order = await find_order(conn, instance, order_id)
        except DatabaseUnavailable as error:
            return self._unavailable(error)
        if order is None:
            return _error(404, "not_found", f"no order {order_id!r} for {instance!r}")
        if not cancelled:
            return JSONResponse(
                {
                    "error": "not_pending",
                    "detail": f"the order is {order.status.value}",
                    "order": _order_json(order),
                },
                status_code=409,
            )
        return JSONResponse({"status": "cancelled", "order": _order_json(order)})

    def _unavailable(self, error: DatabaseUnavailable) -> Response:
        log(logger, logging.WARNING, "orders API: database unavailable", error=str(error))
        return _error(503, "unavailable", "the database is unavailable; retry later")


def order_routes(
    settings: Settings, database: IngressDatabase, environ: Mapping[str, str]
) -> list[Route]:
    api = OrdersApi(settings, database, environ)
    prefix = settings.internal_api.route_prefix
    # `path`: an order id may contain a slash.
    one = prefix + "/orders/{instance}/{order_id:path}"
    return [
        Route(prefix + "/orders", api.register, methods=["POST"]),
        Route(one, api.show, methods=["GET"]),
        Route(one, api.cancel, methods=["DELETE"]),
    ]
