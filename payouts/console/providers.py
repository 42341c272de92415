"""The Providers page: per configured provider instance, its callbacks over the last hour and day
as the ingress answered them (Prometheus: accepted, refused by reason, allowlist refusals among
them, the secret that matched) and as the database recorded them (the outcome each was first
answered with, the last one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ingress.verdicts import Verdict
from payouts.actions.provider_activity import RecordedActivity, recorded_activity
from payouts.console.access import signed_in
from payouts.console.prometheus import WINDOWS, MetricsUnavailable, callback_counts
from payouts.console.rendering import render

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from payouts.console.prometheus import CallbackCounts
    from schema.settings import ProviderInstance, Settings

__all__ = ["providers"]

# The verdicts in the order a person reads them: what was taken, then each refusal.
VERDICT_ORDER = [verdict.value for verdict in Verdict]


@dataclass
class ProviderView:
    instance: ProviderInstance
    recorded: RecordedActivity
    # Verdict or secret name -> one count per window; None without metrics.
    verdicts: list[tuple[str, list[int]]] | None
    secrets: list[tuple[str, list[int]]] | None


def _verdict_rows(counts: dict[str, list[int]]) -> list[tuple[str, list[int]]]:
    zero = [0] * len(WINDOWS)
    known = [(verdict, counts.get(verdict, zero)) for verdict in VERDICT_ORDER]
    # A verdict of another release's ingress, during a rolling upgrade: shown, not dropped.
    return known + sorted((v, c) for v, c in counts.items() if v not in VERDICT_ORDER)


def _secret_rows(
    instance: ProviderInstance, counts: dict[str, list[int]]
) -> list[tuple[str, list[int]]]:
    # Every configured name, even one never matched (the one a rotation can retire), then any
    # name the metrics still hold from before a change of the configuration.
    zero = [0] * len(WINDOWS)
    configured = [(name, counts.get(name, zero)) for name in instance.secret_env]
    return configured + sorted((n, c) for n, c in counts.items() if n not in instance.secret_env)


def _views(
    settings: Settings, recorded: dict[str, RecordedActivity], metrics: CallbackCounts | None
) -> list[ProviderView]:
    views = []
    for instance in settings.providers:
        name = instance.name
        views.append(
            ProviderView(
                instance=instance,
                recorded=recorded.get(name, RecordedActivity()),
                verdicts=_verdict_rows(metrics.by_verdict.get(name, {})) if metrics else None,
                secrets=_secret_rows(instance, metrics.by_secret.get(name, {}))
                if metrics
                else None,
            )
        )
    return views


@signed_in
async def providers(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    recorded = await recorded_activity(settings)
    metrics: CallbackCounts | None = None
    metrics_problem: str | None = None
    if settings.console.prometheus_url is None:
        metrics_problem = (
            "No Prometheus is configured (console.prometheus_url), so refused callbacks and "
            "the secrets that matched are not shown: the database records accepted ones only."
        )
    else:
        try:
            metrics = await callback_counts(settings.console.prometheus_url)
        except MetricsUnavailable as error:
            metrics_problem = (
                f"The ingress's metrics are unavailable, so refused callbacks and the secrets "
                f"that matched are not shown: {error}"
            )
    context = {
        "views": _views(settings, recorded, metrics),
        "windows": ["last hour", "last day"],
        "metrics_problem": metrics_problem,
        "allowlist_verdict": Verdict.IP_NOT_ALLOWED.value,
        "accepted_verdict": Verdict.ACCEPTED.value,
    }
    return render(request, "providers.html", context)
