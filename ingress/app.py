"""The ingress application: one route per configured provider instance, plus health checks."""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingress.client_ip import client_address, is_allowed
from ingress.protocols import protocol_class, validate_providers
from ingress.verdicts import Rejection, Verdict
from schema.broker import BrokerUnavailable, ConfirmedPublisher
from schema.events import PayoutEvent, RawRequest
from schema.logs import log
from schema.settings import AccountPolicy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

    from starlette.types import Receive, Scope, Send

    from ingress.protocols import Claim, ProviderProtocol
    from schema.settings import IngressSettings, Settings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


class CallbackEndpoint:
    """Resolve, check, verify, publish, and only then answer: one provider instance's route."""

    def __init__(
        self, protocol: ProviderProtocol, publisher: ConfirmedPublisher, settings: IngressSettings
    ) -> None:
        self._protocol = protocol
        self._publisher = publisher
        self._settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A plain ASGI app, so the route matches every method and even TRACE or PROPFIND get
        # an answer in the provider's format rather than Starlette's plain-text 405.
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        event_id = uuid.uuid4()
        transaction_id: str | None = None
        secret_name: str | None = None
        try:
            claim, raw_request = await self._read(request)
            transaction_id, secret_name = claim.transaction_id, claim.secret_name
            event = PayoutEvent(
                event_id=event_id,
                provider_instance=self._protocol.instance.name,
                protocol=self._protocol.name,
                transaction_id=claim.transaction_id,
                user_id=claim.user_id,
                amount=claim.amount,
                currency=claim.currency,
                signature=claim.signature,
                create_account=self._protocol.instance.account_policy is AccountPolicy.CREATE,
                answer_code=self._protocol.accepted_answer_code,
                received_at=datetime.now(UTC),
                attributes=claim.attributes,
                raw_request=raw_request,
            )
            await self._publisher.publish_event(event)
            verdict, detail = Verdict.ACCEPTED, ""
        except Rejection as rejection:
            verdict, detail = rejection.verdict, rejection.detail
        except BrokerUnavailable as error:
            verdict, detail = Verdict.TRY_AGAIN, "temporarily unable to accept; retry later"
            log(
                logger,
                logging.WARNING,
                "publish not confirmed",
                event_id=str(event_id),
                provider_instance=self._protocol.instance.name,
                error=str(error),
            )
        except Exception:
            # Never a 500: whatever went wrong, nothing was confirmed, so the provider retries.
            logger.exception("unexpected error handling a callback")
            verdict, detail = Verdict.TRY_AGAIN, "temporarily unable to accept; retry later"
        response = self._protocol.answer(verdict, detail)
        log(
            logger,
            logging.INFO,
            "callback answered",
            event_id=str(event_id) if verdict is Verdict.ACCEPTED else None,
            provider_instance=self._protocol.instance.name,
            transaction_id=transaction_id,
            secret=secret_name,  # which configured variable matched, never its value
            verdict=verdict.value,
            detail=detail or None,
            answer_code=response.status_code,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return response

    async def _read(self, request: Request) -> tuple[Claim, RawRequest]:
        peer = request.client.host if request.client else None
        # Every X-Forwarded-For line, in order: proxies may add a line instead of extending one,
        # and reading only the first would let a caller's forged line decide the address.
        forwarded_for = ", ".join(request.headers.getlist("x-forwarded-for"))
        address = client_address(peer, forwarded_for, self._settings.trusted_proxies)
        if not is_allowed(address, self._protocol.instance.ip_allowlist):
            raise Rejection(Verdict.IP_NOT_ALLOWED, f"address {address} is not allowed")
        if len(request.scope["query_string"]) > self._settings.max_query_bytes:
            raise Rejection(
                Verdict.TOO_LARGE, f"query string over {self._settings.max_query_bytes} bytes"
            )
        if _declared_length(request.headers) > self._settings.max_body_bytes:
            raise Rejection(Verdict.TOO_LARGE, f"body over {self._settings.max_body_bytes} bytes")
        claim = await self._protocol.read_claim(request)
        raw_request = RawRequest(
            method=request.method,
            path=request.url.path,
            query_string=request.scope["query_string"].decode("latin-1"),
            client_ip=str(address),
            user_agent=request.headers.get("user-agent"),
        )
        return claim, raw_request


def _declared_length(headers: Mapping[str, str]) -> int:
    try:
        return int(headers.get("content-length", "0"))
    except ValueError:
        return 0


def create_app(settings: Settings, environ: Mapping[str, str]) -> Starlette:
    """Build the app; raises ConfigError for a provider it cannot serve (before any traffic)."""
    publisher = ConfirmedPublisher(settings.broker, "ingress")
    routes = [
        Route("/healthz", lambda _: JSONResponse({"status": "alive"}), methods=["GET"]),
        Route("/readyz", _readiness(publisher), methods=["GET"]),
    ]
    validate_providers(settings.providers)
    for instance in settings.providers:
        protocol = protocol_class(instance.protocol)(instance, instance.read_secrets(environ))
        endpoint = CallbackEndpoint(protocol, publisher, settings.ingress)
        routes.append(Route(instance.route, endpoint))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        publisher.start()
        try:
            yield
        finally:
            await publisher.close()

    return Starlette(routes=routes, lifespan=lifespan)


def _readiness(publisher: ConfirmedPublisher) -> Callable[[Request], Awaitable[Response]]:
    async def readyz(_: Request) -> Response:
        if publisher.ready:
            return JSONResponse({"status": "ready", "broker": "connected"})
        return JSONResponse({"status": "not ready", "broker": "disconnected"}, status_code=503)

    return readyz
