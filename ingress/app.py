"""The ingress application: one route per configured provider instance, the proof and internal
order APIs when configured, and health checks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from broker.publisher import ConfirmedPublisher
from ingress import metrics
from ingress.abuse import FailedVerificationLimiter
from ingress.bodies import read_body
from ingress.claimed_events import claimed_event, new_event_id
from ingress.client_ip import is_allowed, request_address
from ingress.database import IngressDatabase
from ingress.envelope_gathering import EnvelopeGatherer
from ingress.orders_api import order_routes
from ingress.outcomes import OutcomeListener, OutcomeUnavailable
from ingress.proof_api import ProofEndpoint
from ingress.protocols import protocol_class, validate_providers
from ingress.verdicts import Rejection, Verdict
from schema.errors import BrokerUnavailable
from schema.events import RawRequest
from schema.logs import log
from schema.metrics import CONTENT_TYPE_LATEST, children, exposition

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

    from starlette.types import ASGIApp, Receive, Scope, Send

    from ingress.client_ip import IPAddress
    from ingress.protocols import Claim, ProviderProtocol
    from schema.events import PayoutEvent
    from schema.settings import IngressSettings, Settings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

# How stale another process's connection gauges may be when this one answers a scrape.
GAUGE_REFRESH_SECONDS = 1.0


class CallbackEndpoint:
    """Resolve, check, verify, publish, and only then answer: one provider instance's route."""

    def __init__(
        self,
        protocol: ProviderProtocol,
        gatherer: EnvelopeGatherer,
        settings: IngressSettings,
        outcomes: OutcomeListener | None,
    ) -> None:
        self._protocol = protocol
        self._gatherer = gatherer
        self._settings = settings
        self._outcomes = outcomes
        self._limiter = FailedVerificationLimiter(protocol.instance.failed_verifications_per_minute)
        # A protocol that does not wait for the outcome gives every accepted callback the same
        # answer: rendered once. A response holds no per-request state, so one serves them all.
        self._accepted: Response | None = None
        self._accepted_code: int | str = ""
        if not protocol.waits_for_outcome:
            self._accepted = protocol.answer(Verdict.ACCEPTED)
            self._accepted_code = _answer_code(self._accepted)
        instance = protocol.instance.name
        self._request_seconds = metrics.REQUEST_SECONDS.labels(instance)
        self._requests = children(metrics.REQUESTS, instance)
        self._secret_matches = children(metrics.SECRET_MATCHES, instance)
        self._verification_failures = children(metrics.VERIFICATION_FAILURES, instance)
        # Every refusal reason, configured secret and (where it is fixed) accepted answer is
        # exported from the start, at 0: a series first seen at 1 hides that first count from
        # Prometheus's increase(), and the console's Providers page would miss it.
        for verdict in Verdict:
            if verdict is not Verdict.ACCEPTED:
                self._verification_failures(verdict.value)
        for secret_name in protocol.instance.secret_env:
            self._secret_matches(secret_name)
        if self._accepted is not None:
            self._requests(Verdict.ACCEPTED.value, self._accepted_code)
        if protocol.waits_for_outcome and outcomes is None:
            raise ValueError(f"protocol {protocol.name} waits for outcomes: give it a listener")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A plain ASGI app, so the route matches every method and even TRACE or PROPFIND get
        # an answer in the provider's format rather than Starlette's plain-text 405.
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        instance = self._protocol.instance.name
        event_id = new_event_id()
        transaction_id: str | None = None
        secret_name: str | None = None
        outcome: str | None = None
        # Set once an event exists: a publish whose confirm was lost may still be credited, so
        # the callback line must name the event even when the provider is told to retry.
        built_event_id: str | None = None
        address = request_address(request, self._settings.trusted_proxies)
        try:
            claim, raw_request = await self._read(request, address)
            transaction_id, secret_name = claim.transaction_id, claim.secret_name
            self._secret_matches(secret_name).inc()
            event = claimed_event(self._protocol, claim, raw_request, event_id)
            built_event_id = event_id
            if self._protocol.waits_for_outcome:
                response, outcome = await self._publish_and_wait(event, claim)
            else:
                await self._publish(event)
                assert self._accepted is not None  # rendered for every protocol that does not wait
                response = self._accepted
            verdict, detail = Verdict.ACCEPTED, ""
        except Rejection as rejection:
            verdict, detail = rejection.verdict, rejection.detail
            self._limiter.count(address, rejection)
            self._verification_failures(verdict.value).inc()
        except OutcomeUnavailable as error:
            # Perhaps published, perhaps even credited, but not answered as accepted: the log
            # line and the metrics must say "try again", as the answer does.
            verdict, detail, outcome = Verdict.TRY_AGAIN, str(error), "unknown"
        except BrokerUnavailable as error:
            verdict, detail = Verdict.TRY_AGAIN, "temporarily unable to accept; retry later"
            log(
                logger,
                logging.WARNING,
                "publish not confirmed",
                event_id=event_id,
                provider_instance=self._protocol.instance.name,
                error=str(error),
            )
        except Exception:
            # Never a 500: whatever went wrong, nothing was confirmed, so the provider retries.
            logger.exception("unexpected error handling a callback")
            verdict, detail = Verdict.TRY_AGAIN, "temporarily unable to accept; retry later"
        if verdict is not Verdict.ACCEPTED:
            response = self._protocol.answer(verdict, detail)
        answer_code = self._accepted_code if response is self._accepted else _answer_code(response)
        elapsed = time.perf_counter() - started
        self._requests(verdict.value, answer_code).inc()
        self._request_seconds.observe(elapsed)
        log(
            logger,
            logging.INFO,
            "callback answered",
            event_id=built_event_id,
            provider_instance=instance,
            transaction_id=transaction_id,
            secret=secret_name,  # which configured variable matched, never its value
            verdict=verdict.value,
            outcome=outcome,
            detail=detail or None,
            answer_code=answer_code,
            latency_ms=round(elapsed * 1000, 2),
        )
        return response

    async def _publish(self, event: PayoutEvent, reply_to: str | None = None) -> None:
        started = time.perf_counter()
        try:
            await self._gatherer.publish(event, reply_to)
        except BrokerUnavailable:
            metrics.PUBLISH_FAILURES.inc()
            raise
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)

    async def _publish_and_wait(self, event: PayoutEvent, claim: Claim) -> tuple[Response, str]:
        """Publish, then answer with the committed outcome; raise OutcomeUnavailable if it is
        late, for a "try again": the provider's retry is then answered from the record."""
        assert self._outcomes is not None  # checked in __init__
        with self._outcomes.expecting(event.event_id) as future:
            try:
                if not self._outcomes.listening:
                    # Nothing could tell us the outcome, and some providers take "try again" as a
                    # final failure: publish nothing, so that answer stays true.
                    raise OutcomeUnavailable(
                        OutcomeUnavailable.NOT_LISTENING,
                        "not listening for outcomes; nothing published",
                    )
                await self._publish(event, self._outcomes.channel)
                report = await self._outcomes.wait(
                    future, self._protocol.instance.outcome_timeout_seconds
                )
            except OutcomeUnavailable as error:
                metrics.OUTCOME_UNAVAILABLE.labels(event.provider_instance, error.reason).inc()
                log(
                    logger,
                    logging.WARNING,
                    "no outcome to answer with",
                    **event.log_fields(),
                    error=str(error),
                )
                raise
        return self._protocol.answer_outcome(claim, report), report.outcome.value

    async def _read(self, request: Request, address: IPAddress | None) -> tuple[Claim, RawRequest]:
        if not is_allowed(address, self._protocol.instance.ip_allowlist):
            raise Rejection(Verdict.IP_NOT_ALLOWED, f"address {address} is not allowed")
        if self._limiter.limited(address):
            raise Rejection(
                Verdict.RATE_LIMITED,
                f"too many requests from {address} failed verification; retry in a minute",
            )
        if len(request.scope["query_string"]) > self._settings.max_query_bytes:
            raise Rejection(
                Verdict.TOO_LARGE, f"query string over {self._settings.max_query_bytes} bytes"
            )
        if _declared_length(request.headers) > self._settings.max_body_bytes:
            raise Rejection(Verdict.TOO_LARGE, f"body over {self._settings.max_body_bytes} bytes")
        if request.method != self._protocol.method:
            raise Rejection(
                Verdict.METHOD_NOT_ALLOWED, f"callbacks are HTTP {self._protocol.method} requests"
            )
        body = b""
        if self._protocol.method == "POST":
            body = await read_body(request, self._settings.max_body_bytes)
        claim = await self._protocol.read_claim(request, body)
        raw_request = RawRequest(
            method=request.method,
            path=request.scope["path"],
            query_string=request.scope["query_string"].decode("latin-1"),
            client_ip=str(address),
            user_agent=request.headers.get("user-agent"),
            # Verified above, so valid UTF-8 JSON.
            body=body.decode() if body else None,
        )
        return claim, raw_request


def _answer_code(response: Response) -> int | str:
    """The code the provider reads: the HTTP status, or the code in a JSON body that has one."""
    try:
        body = json.loads(bytes(response.body))
    except ValueError:
        return response.status_code
    for key in ("code", "resultCode"):
        if isinstance(body, dict) and key in body:
            return str(body[key])
    return response.status_code


def _declared_length(headers: Mapping[str, str]) -> int:
    try:
        return int(headers.get("content-length", "0"))
    except ValueError:
        return 0


class IngressApp(Starlette):
    """Starlette, with the provider callbacks dispatched before its middleware and router.

    Callback routes are literal paths, and their endpoint answers every method and turns every
    error into the provider's own answer, so Starlette's error and exception middleware and its
    route matching have nothing to do for them. Skipping them measured 3 to 7% more callbacks
    per second (three alternating pairs of 8 s wrk runs, spec 000). Every other path, a
    callback's with a trailing slash included, goes through Starlette as before.
    """

    def __init__(self, callbacks: Mapping[str, ASGIApp], **options: Any) -> None:
        super().__init__(**options)
        self._callbacks = dict(callbacks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (endpoint := self._callbacks.get(scope["path"])):
            scope["app"] = self
            await endpoint(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, environ: Mapping[str, str]) -> Starlette:
    """Build the app; raises ConfigError for a provider it cannot serve (before any traffic)."""
    validate_providers(settings.providers)
    publisher = ConfirmedPublisher(settings.broker, "ingress")
    gatherer = EnvelopeGatherer(
        publisher, settings.broker.max_events_per_message, settings.broker.publish_timeout_seconds
    )
    protocols = [
        protocol_class(instance.protocol)(instance, instance.read_secrets(environ))
        for instance in settings.providers
    ]
    for protocol in protocols:
        for risk in protocol.startup_warnings():
            log(
                logger,
                logging.WARNING,
                "provider settings accept a risk",
                provider_instance=protocol.instance.name,
                risk=risk,
            )
    outcomes = (
        OutcomeListener(settings.database)
        if any(protocol.waits_for_outcome for protocol in protocols)
        else None
    )
    serves_apis = bool(settings.partners) or bool(settings.internal_api.token_env)
    database = IngressDatabase(settings.database) if serves_apis else None
    routes = [
        Route("/healthz", lambda _: JSONResponse({"status": "alive"}), methods=["GET"]),
        Route("/readyz", _readiness(publisher, outcomes, database), methods=["GET"]),
        Route("/metrics", _metrics(settings.ingress, publisher, outcomes), methods=["GET"]),
    ]
    callbacks = {
        protocol.instance.route: CallbackEndpoint(protocol, gatherer, settings.ingress, outcomes)
        for protocol in protocols
    }
    # Still routes as well: for what Starlette derives from them (a trailing slash's redirect).
    routes.extend(Route(path, endpoint) for path, endpoint in callbacks.items())
    if database is not None and settings.partners:
        routes.append(Route(settings.proof_api.route, ProofEndpoint(settings, database, environ)))
    if database is not None and settings.internal_api.token_env:
        routes.extend(order_routes(settings, database, environ))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        publisher.start()
        if outcomes is not None:
            outcomes.start()
        if database is not None:
            await database.open()
        gauges = asyncio.create_task(
            _keep_connection_gauges(publisher, outcomes), name="connection-gauges"
        )
        try:
            yield
        finally:
            # No turn of the loop before publisher.close() (`gauges` is awaited last, and the
            # gatherer waits only for publishes in flight, which need a connected publisher): a
            # publisher still connecting would get halfway into the handshake close() cancels.
            gauges.cancel()
            await gatherer.close()  # what was accepted is published or answered "try again"
            await publisher.close()
            if outcomes is not None:
                await outcomes.close()
            if database is not None:
                await database.close()
            with contextlib.suppress(asyncio.CancelledError):
                await gauges

    return IngressApp(callbacks, routes=routes, lifespan=lifespan)


def _readiness(
    publisher: ConfirmedPublisher,
    outcomes: OutcomeListener | None,
    database: IngressDatabase | None,
) -> Callable[[Request], Awaitable[Response]]:
    """Ready means callbacks can be accepted: the broker. The rest is reported, not required, so
    a database outage does not take the callback endpoints out of rotation."""

    async def readyz(_: Request) -> Response:
        report: dict[str, str] = {
            "status": "ready" if publisher.ready else "not ready",
            "broker": "connected" if publisher.ready else "disconnected",
        }
        if outcomes is not None:
            report["outcomes"] = "listening" if outcomes.listening else "not listening"
        if database is not None:
            report["database"] = "reachable" if await database.reachable() else "unreachable"
        return JSONResponse(report, status_code=200 if publisher.ready else 503)

    return readyz


def _metrics(
    settings: IngressSettings, publisher: ConfirmedPublisher, outcomes: OutcomeListener | None
) -> Callable[[Request], Awaitable[Response]]:
    """Prometheus's view, for the networks in `metrics_allowlist` only: the callback port faces
    the providers, who have no business reading our traffic."""

    async def serve_metrics(request: Request) -> Response:
        address = request_address(request, settings.trusted_proxies)
        if not is_allowed(address, settings.metrics_allowlist):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        _set_connection_gauges(publisher, outcomes)  # this process's own, exact at the scrape
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return serve_metrics


def _set_connection_gauges(publisher: ConfirmedPublisher, outcomes: OutcomeListener | None) -> None:
    metrics.BROKER_CONNECTED.set(publisher.ready)
    if outcomes is not None:
        metrics.OUTCOMES_LISTENING.set(outcomes.listening)


async def _keep_connection_gauges(
    publisher: ConfirmedPublisher, outcomes: OutcomeListener | None
) -> None:
    """Write this process's connection state every GAUGE_REFRESH_SECONDS. Under --processes N
    whichever process answers a scrape renders the values every process last wrote, and
    Prometheus's kept-alive connection reaches only one of them: a value written only at the
    scrape would stay at its initial 0 in all the others, the minimum with it."""
    while True:
        _set_connection_gauges(publisher, outcomes)
        await asyncio.sleep(GAUGE_REFRESH_SECONDS)
