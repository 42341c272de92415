"""The configuration file: its shape, its validation, and the errors a person can act on."""

from __future__ import annotations

import os
import re
import tomllib
from decimal import Decimal
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path  # pydantic reads the annotations at run time
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from argon2 import Type, extract_parameters
from argon2.exceptions import InvalidHashError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from schema.envelopes import MAX_EVENTS_PER_ENVELOPE
from schema.errors import ConfigError
from schema.logs import redacted_url

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "AccountPolicy",
    "BrokerSettings",
    "ConsoleOperator",
    "ConsoleRole",
    "ConsoleSettings",
    "DatabaseSettings",
    "FormatSpec",
    "IngressSettings",
    "InternalApiSettings",
    "NodeOrder",
    "Partner",
    "ProofApiSettings",
    "ProviderInstance",
    "RegexFormat",
    "Settings",
    "WorkerSettings",
    "database_hosts",
    "load_settings",
    "with_file_operators",
]

DATABASE_URL_ENV = "PAYOUTS_DATABASE_URL"
BROKER_URL_ENV = "PAYOUTS_BROKER_URL"
CONFIG_PATH_ENV = "PAYOUTS_CONFIG"

IPNetwork = IPv4Network | IPv6Network
# Served by the ingress itself: health checks and metrics.
RESERVED_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ip_network(network)
    for network in (
        "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7",
    )
)  # fmt: skip


def _decimal_not_float(value: object) -> object:
    # A TOML float has already lost exactness; money limits must be written as strings or integers.
    if isinstance(value, float):
        raise ValueError('write amounts as a string or an integer (e.g. "1000.50"), not a float')
    return value


def _names(value: object) -> object:
    return (value,) if isinstance(value, str) else value


def _network(value: object) -> object:
    if isinstance(value, str):
        return ip_network(value, strict=False)
    return value


ExactDecimal = Annotated[Decimal, BeforeValidator(_decimal_not_float)]
Network = Annotated[IPNetwork, BeforeValidator(_network)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SectionT = TypeVar("SectionT", bound=_Section)


# Every connection of ours may write (the worker, the orders API, the operator's commands), so a
# URL naming a primary and its standbys must lead each new connection to the server that takes
# writes: asyncpg tries the hosts in order and keeps the first that is neither in hot standby
# nor read-only by default. We add it where the URL leaves it out, which also outranks a
# PGTARGETSESSIONATTRS in the environment.
_TARGET_SESSION_ATTRS = "target_session_attrs"
_READ_WRITE = "read-write"
# One host of a libpq URL: a name, an IPv4 address or a bracketed IPv6 one, and maybe a port.
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^\[\]:/]+)(?::(?P<port>[0-9]{1,5}))?$")


def database_hosts(url: str) -> tuple[tuple[str, int | None], ...]:
    """The hosts a postgresql:// URL names, in order, as (host, port or None for the default),
    the host unquoted and an IPv6 address without its brackets; none when the URL leaves the
    host to asyncpg's defaults. ValueError for a URL asyncpg would not take."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("must be a postgresql:// URL (postgresql://user@host:port/database)")
    hosts = parts.netloc.rpartition("@")[2]
    found = []
    for host in hosts.split(",") if hosts else ():
        match = _HOST_PORT.match(host)
        if not match or not 0 < int(match["port"] or 1) < 65536:
            raise ValueError(
                f"cannot read the host {host!r}: write each host as host, host:port or "
                "[ipv6]:port, several separated by commas (h1:5432,h2:5432)"
            )
        name = unquote(match["host"]).removeprefix("[").removesuffix("]")
        found.append((name, int(match["port"]) if match["port"] else None))
    return tuple(found)


def _read_write_url(url: str) -> str:
    """`url` with `target_session_attrs=read-write`, added if missing; ValueError for a URL
    asyncpg would not take, or one that would let a connection land on a standby."""
    database_hosts(url)
    parts = urlsplit(url)
    targets = [value for key, value in parse_qsl(parts.query) if key == _TARGET_SESSION_ATTRS]
    if not targets:
        # Appended to the text: rebuilding the URL from its parts would drop an empty host.
        base, hash_sign, fragment = url.partition("#")
        separator = "&" if parts.query else ("" if base.endswith("?") else "?")
        return f"{base}{separator}{_TARGET_SESSION_ATTRS}={_READ_WRITE}{hash_sign}{fragment}"
    if targets != [_READ_WRITE]:
        raise ValueError(
            f"{_TARGET_SESSION_ATTRS}={targets[-1]} could put a connection on a server that "
            f"refuses writes (a standby); use {_TARGET_SESSION_ATTRS}={_READ_WRITE}, or leave "
            "it out and it is added"
        )
    return url


class DatabaseSettings(_Section):
    # One host, or a primary and its standbys as libpq writes them (h1:5432,h2:5432);
    # docs/high-availability.md, "Replicated database".
    url: Annotated[str, AfterValidator(_read_write_url)] = (
        "postgresql://root@127.0.0.1:5432/payouts?target_session_attrs=read-write"
    )
    pool_min_size: int = Field(default=1, ge=1)
    pool_max_size: int = Field(default=10, ge=1)
    acquire_timeout_seconds: float = Field(default=10.0, gt=0)
    # How long one host of the URL gets to take a new connection (TCP, TLS, authentication and
    # the read-write check) before the next host is tried: a host that hangs (its machine gone,
    # packets dropped) must not hold up the others. Each host gets its own, so a connection may
    # take up to this times the number of hosts.
    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    # Postgres ends a transaction of ours left idle this long: a frozen process (a stuck VM,
    # SIGSTOP) must not hold its row locks, and with them every worker crediting the same
    # wallets, for good. Our transactions wait on nothing but Postgres: seconds are generous.
    idle_in_transaction_timeout_seconds: float = Field(default=10.0, ge=1, le=3600)
    # The ingress's own pool, for the proof and orders APIs only: small, opened lazily, and quick
    # to answer "unavailable" while a partner or the game waits on the other end.
    api_pool_max_size: int = Field(default=5, ge=1, le=100)
    api_acquire_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    api_statement_timeout_seconds: float = Field(default=5.0, gt=0, le=600)

    def server_settings(self) -> dict[str, str]:
        """Session settings for every connection of ours that may open a transaction."""
        timeout_ms = round(self.idle_in_transaction_timeout_seconds * 1000)
        return {"idle_in_transaction_session_timeout": str(timeout_ms)}


# The port an AMQP URL without one reaches, by scheme.
AMQP_PORTS = {"amqp": 5672, "amqps": 5671}


def _broker_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in AMQP_PORTS or not parts.hostname:
        raise ValueError(
            f"{redacted_url(url)!r} is not an AMQP URL; write amqp://user:password@host:5672/ "
            "(or amqps:// for TLS)"
        )
    try:
        parts.port  # noqa: B018  (parsed for its error: a port that is not a number)
    except ValueError:
        raise ValueError(f"{redacted_url(url)!r}: the port is not a number") from None
    return url


def _node(url: str) -> tuple[str, int]:
    """The host and port a URL reaches: two URLs with the same ones name the same node."""
    parts = urlsplit(url)
    return (parts.hostname or "", parts.port or AMQP_PORTS[parts.scheme])


BrokerUrl = Annotated[str, AfterValidator(_broker_url)]


class NodeOrder(StrEnum):
    """The order a process tries the broker nodes in."""

    # Each process its own order, so processes spread over the nodes instead of all piling onto
    # the first one.
    SHUFFLED = "shuffled"
    # Always the first reachable one, e.g. to keep clients on the node nearest to them.
    LISTED = "listed"


class BrokerSettings(_Section):
    # The nodes of one RabbitMQ cluster, each a URL with credentials. A process holds one
    # connection at a time and moves to another node when its node is lost. `url = "..."` is the
    # same as a list of one.
    urls: tuple[BrokerUrl, ...] = ("amqp://guest:guest@127.0.0.1:5672/",)
    node_order: NodeOrder = NodeOrder.SHUFFLED
    # Replicas of each quorum queue when it is declared, capped by RabbitMQ at the nodes in the
    # cluster then. 0 leaves the argument out, as queues declared before this setting were:
    # RabbitMQ refuses to redeclare a queue with different arguments (docs/high-availability.md).
    quorum_initial_group_size: int = Field(default=3, ge=0, le=99)
    namespace: str = Field(default="payouts", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    # Events the ingress gathers into one message while the previous one awaits its confirm; 1
    # sends one message per callback. The default is a guess until the bench measures it.
    max_events_per_message: int = Field(default=10, ge=1, le=MAX_EVENTS_PER_ENVELOPE)
    # The wait after a failed connection attempt; it doubles with each failure in a row, up to
    # `reconnect_max_interval_seconds`. A lost connection tries the next node at once.
    reconnect_interval_seconds: float = Field(default=2.0, gt=0)
    reconnect_max_interval_seconds: float = Field(default=30.0, gt=0)
    # One wait queue per delay: a failed delivery waits in tier N before its N+1-th attempt, and
    # is dead-lettered after the last tier. Part of the topology, so every process must agree.
    retry_delays_seconds: tuple[int, ...] = Field(
        default=(5, 60, 600, 3600), min_length=1, max_length=10
    )
    # Each wait is shortened by up to this fraction, at random, so retries do not arrive in step.
    retry_jitter: float = Field(default=0.2, ge=0, lt=1)

    @field_validator("retry_delays_seconds")
    @classmethod
    def _increasing(cls, delays: tuple[int, ...]) -> tuple[int, ...]:
        if any(delay < 1 or delay > 86_400 for delay in delays) or list(delays) != sorted(
            set(delays)
        ):
            raise ValueError("must be distinct whole seconds from 1 to 86400, in increasing order")
        return delays

    @model_validator(mode="before")
    @classmethod
    def _one_url_or_several(cls, data: Any) -> Any:
        """`url` is `urls` with one node; both at once would leave a doubt which one counts."""
        if not isinstance(data, dict) or "url" not in data:
            return data
        if "urls" in data:
            raise ValueError("give either url (one node) or urls (several), not both")
        urls = {key: value for key, value in data.items() if key != "url"}
        urls["urls"] = (data["url"],)
        return urls

    @field_validator("urls")
    @classmethod
    def _distinct_nodes(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        if not urls:
            raise ValueError('list at least one node, e.g. ["amqp://user:password@rabbit-1:5672/"]')
        seen: set[tuple[str, int]] = set()
        for url in urls:
            node = _node(url)
            if node in seen:
                raise ValueError(f"{node[0]}:{node[1]} is listed twice; list each node once")
            seen.add(node)
        return urls

    @model_validator(mode="after")
    def _backoff_cap(self) -> BrokerSettings:
        if self.reconnect_max_interval_seconds < self.reconnect_interval_seconds:
            raise ValueError(
                "reconnect_max_interval_seconds caps the wait between attempts; make it at "
                "least reconnect_interval_seconds"
            )
        return self


class IngressSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_query_bytes: int = Field(default=4096, ge=256)
    max_body_bytes: int = Field(default=65536, ge=0)
    trusted_proxies: tuple[Network, ...] = ()
    # Who may read /metrics on the callback port: loopback and private networks, where
    # Prometheus lives, and not the providers on the internet.
    metrics_allowlist: tuple[Network, ...] = PRIVATE_NETWORKS
    # How long an idle kept-alive connection stays open. Longer than the idle timeout of any
    # client or proxy in front (ingress-nginx and AWS's load balancers 60 s, httpx 5 s): a server
    # that closes first races the client's next request, which then fails with a reset.
    keep_alive_seconds: int = Field(default=75, ge=1, le=3600)


class WorkerSettings(_Section):
    # Deliveries in flight per worker: room for the batches committing and as many filling
    # meanwhile, so that a worker never waits for deliveries after a commit.
    prefetch: int = Field(default=800, ge=1, le=10_000)
    # Payouts credited per database transaction, at most; a batch starts when it is full or
    # `batch_linger_seconds` after its first delivery, whichever comes first.
    batch_size: int = Field(default=200, ge=1, le=1000)
    batch_linger_seconds: float = Field(default=0.02, ge=0, le=1)
    # Batches committing at once per worker; while they do, the next batch keeps growing.
    concurrent_batches: int = Field(default=2, ge=1, le=100)
    # How long one delivery retries a transient failure in place before it moves to the next
    # retry tier; short, so a delivery never holds a slot (or nears the consumer timeout) for long.
    in_place_retry_seconds: float = Field(default=2.0, ge=0, le=600)
    # A worker that has held no consumer for this long exits, so its supervisor restarts it.
    no_consumer_exit_seconds: float = Field(default=120.0, gt=0)
    shutdown_grace_seconds: float = Field(default=20.0, gt=0)
    # /metrics, /healthz and /readyz of one worker process. Several processes on one host need
    # one port each (docs/operations.md, "Metrics").
    status_host: str = "127.0.0.1"
    status_port: int = Field(default=9101, ge=0, le=65535)
    # How often the queue depths are read from the broker for payouts_queue_messages.
    queue_sample_seconds: float = Field(default=15.0, ge=1, le=3600)


class AccountPolicy(StrEnum):
    CREATE = "create"
    REQUIRE_EXISTING = "require_existing"


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_names(names: tuple[str, ...]) -> tuple[str, ...]:
    if not all(_ENV_NAME.match(name) for name in names):
        raise ValueError("must name environment variables, not hold the secret itself")
    if len(set(names)) != len(names):
        raise ValueError("names the same environment variable twice")
    return names


# One variable name, or several while a secret is being rotated (current and next).
EnvNames = Annotated[tuple[str, ...], BeforeValidator(_names), AfterValidator(_env_names)]


class RegexFormat(_Section):
    """A format given as a regular expression, which a value must match in full."""

    regex: str = Field(min_length=1, max_length=1000)


# A built-in format's name (ingress/parameter_formats.py) or a regular expression.
FormatSpec = str | RegexFormat


class ProviderInstance(_Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    protocol: str
    route: str = Field(pattern=r"^/[A-Za-z0-9/_.-]*$")
    # One variable name, or several while a secret is being rotated (current and next): a
    # request signed with any of them verifies, and the log names the one that matched.
    secret_env: EnvNames = Field(min_length=1, max_length=3)
    parameters: dict[str, str] = Field(default_factory=dict)
    default_currency: str | None = Field(default=None, min_length=1, max_length=32)
    allowed_currencies: tuple[str, ...] | None = None
    ip_allowlist: tuple[Network, ...] | None = None
    max_amount: ExactDecimal = Field(gt=0)
    amount_decimal_places: int = Field(default=0, ge=0, le=8)
    account_policy: AccountPolicy
    # Protocol-specific; each protocol refuses the ones it does not use (docs/protocols.md).
    signature_scheme: str | None = None
    verify_orders: bool = False
    # Protocols that answer with the outcome wait this long for it, then say "try again".
    outcome_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    request_max_age_seconds: int = Field(default=600, ge=1, le=86_400)
    # Requests from one address that fail verification, per minute, before that address is
    # answered "try again later" without being verified (docs/security.md, "Abuse controls").
    failed_verifications_per_minute: int = Field(default=60, ge=1, le=1_000_000)
    # Device identifiers (IMEI, MAC, advertising ids) are stored hashed unless this is true.
    store_device_ids: bool = False
    # Spec 000: every parameter the postback URL carries besides the spec's mandatory ones, by the
    # name sent, with its format; any other parameter is refused. Unset: the spec's four device
    # ids with their formats. "any" accepts every parameter unchecked (docs/security.md).
    extra_parameters: dict[str, FormatSpec] | Literal["any"] | None = None
    # Formats for fields the spec leaves free, by the spec's name, checked on top of the
    # protocol's own rules (docs/protocols.md, "Declared formats").
    field_formats: dict[str, FormatSpec] = Field(default_factory=dict)

    def read_secrets(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Each named variable's secret, in the order configured; every one must be set."""
        return read_secrets(
            environ, self.secret_env, f"provider instance {self.name!r}", "the provider gave you"
        )


def read_secrets(
    environ: Mapping[str, str], names: tuple[str, ...], owner: str, source: str
) -> dict[str, str]:
    """`names` mapped to their values in `environ`; a missing or empty one is a ConfigError."""
    secrets = {name: environ.get(name, "") for name in names}
    for name, secret in secrets.items():
        if not secret:
            raise ConfigError(
                f"{owner}: environment variable {name} is not set or empty; "
                f"export it with the secret {source}"
            )
    return secrets


class Partner(_Section):
    """A partner of the Payout Proof API (spec 002) and the instances whose payouts it may see."""

    pid: str = Field(min_length=1, max_length=128)
    # Several names while a key or secret is rotated, as for provider secrets.
    api_key_env: EnvNames = Field(min_length=1, max_length=3)
    secret_env: EnvNames = Field(min_length=1, max_length=3)
    provider_instances: tuple[str, ...] = Field(min_length=1)


class ProofApiSettings(_Section):
    route: str = Field(default="/payout/api/proof/get_data.php", pattern=r"^/[A-Za-z0-9/_.-]*$")
    # Attached proof images larger than this are refused by `payouts payout attach-proof`.
    max_image_bytes: int = Field(default=1_048_576, ge=1024, le=16_777_216)


class InternalApiSettings(_Section):
    """The game server's authenticated API (pending orders); off unless `token_env` is set."""

    route_prefix: str = Field(default="/internal", pattern=r"^/[A-Za-z0-9/_.-]*[A-Za-z0-9_.-]$")
    token_env: EnvNames = Field(default=(), max_length=3)
    ip_allowlist: tuple[Network, ...] | None = None


class ConsoleRole(StrEnum):
    """What an operator of the web console may do."""

    # Reads every page.
    VIEWER = "viewer"
    # Reads, and acts: replays, purges, creates accounts, cancels orders.
    OPERATOR = "operator"


def _argon2id_hash(value: str) -> str:
    try:
        parameters = extract_parameters(value)
    except InvalidHashError:
        parameters = None
    if parameters is None or parameters.type is not Type.ID:
        raise ValueError(
            "is not an argon2id hash ($argon2id$v=19$...); make one with "
            "`payouts console hash-password` and paste its output, never the password itself"
        )
    return value


class ConsoleOperator(_Section):
    """A person who may log in to the web console."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    password_hash: Annotated[str, AfterValidator(_argon2id_hash)]
    role: ConsoleRole


class ConsoleSettings(_Section):
    """The operator web console (`payouts console`, docs/console.md): its own port, never the
    providers' one, and the people who may log in."""

    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    # The variable holding the key that signs session cookies (at least 32 bytes): whoever has
    # it can make a cookie of any operator, so it is a secret like the providers'.
    session_secret_env: str = Field(
        default="PAYOUTS_CONSOLE_SESSION_SECRET", pattern=_ENV_NAME.pattern
    )
    # A session ends this long after its login, however active it was.
    session_max_age_seconds: int = Field(default=8 * 3600, ge=1, le=7 * 86_400)
    # Cookies only over HTTPS; false only for a console reached over plain http on loopback.
    secure_cookies: bool = True
    operators: tuple[ConsoleOperator, ...] = ()
    # A file of more [[console.operators]], read when the console starts: where the hashes
    # come from a secret store (a Kubernetes Secret mounted as a file) rather than this file.
    operators_file: Path | None = None
    # The Prometheus that scrapes the ingress (its HTTP API, e.g. http://prometheus:9090): the
    # Providers page reads the callbacks' counts by verdict and secret there. Unset: that page
    # shows what the database records only.
    prometheus_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")

    @field_validator("operators_file")
    @classmethod
    def _absolute_operators_file(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_absolute():
            raise ValueError(
                "must be an absolute path: the console may start in any working directory"
            )
        return path

    @field_validator("operators")
    @classmethod
    def _unique_operators(
        cls, operators: tuple[ConsoleOperator, ...]
    ) -> tuple[ConsoleOperator, ...]:
        names = [operator.name for operator in operators]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"operators {twice} are listed twice; list each person once")
        return operators


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    broker: BrokerSettings = BrokerSettings()
    ingress: IngressSettings = IngressSettings()
    worker: WorkerSettings = WorkerSettings()
    providers: tuple[ProviderInstance, ...] = ()
    proof_api: ProofApiSettings = ProofApiSettings()
    partners: tuple[Partner, ...] = ()
    internal_api: InternalApiSettings = InternalApiSettings()
    console: ConsoleSettings = ConsoleSettings()

    @model_validator(mode="after")
    def _unique_names_and_routes(self) -> Settings:
        for attribute in ("name", "route"):
            seen: set[str] = set()
            for provider in self.providers:
                value = getattr(provider, attribute)
                if value in seen:
                    raise ValueError(f"two provider instances share the {attribute} {value!r}")
                seen.add(value)
        routes = {provider.route for provider in self.providers}
        reserved = sorted(routes & RESERVED_ROUTES)
        if reserved:
            raise ValueError(f"provider routes {reserved} are the ingress's own; choose others")
        if self.partners and self.proof_api.route in routes:
            raise ValueError(f"proof_api.route {self.proof_api.route!r} is a provider's route")
        if self.internal_api.token_env and any(
            route.startswith(self.internal_api.route_prefix + "/") for route in routes
        ):
            raise ValueError(
                f"internal_api.route_prefix {self.internal_api.route_prefix!r} covers a "
                "provider's route"
            )
        return self

    @model_validator(mode="after")
    def _partners_see_known_instances(self) -> Settings:
        names = {provider.name for provider in self.providers}
        pids: set[str] = set()
        for partner in self.partners:
            if partner.pid in pids:
                raise ValueError(f"two partners share the pid {partner.pid!r}")
            pids.add(partner.pid)
            unknown = sorted(set(partner.provider_instances) - names)
            if unknown:
                raise ValueError(
                    f"partner {partner.pid!r} names unknown provider instances: {unknown}"
                )
        return self


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def load_settings(path: Path, environ: dict[str, str] | None = None) -> Settings:
    """Read and validate the file; `PAYOUTS_DATABASE_URL` and `PAYOUTS_BROKER_URL` (one URL or
    several separated by commas) override it."""
    env = dict(os.environ) if environ is None else environ
    raw = _read_toml(path)
    if env.get(DATABASE_URL_ENV):
        raw.setdefault("database", {})["url"] = env[DATABASE_URL_ENV]
    if env.get(BROKER_URL_ENV):
        # Several nodes separated by commas (a comma in a password is written %2C); the variable
        # replaces whichever of url and urls the file gives.
        broker = raw.setdefault("broker", {})
        broker.pop("url", None)
        broker["urls"] = [url.strip() for url in env[BROKER_URL_ENV].split(",")]
    return _validated(Settings, raw, path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as error:  # a directory, no permission: what the system says
        raise ConfigError(f"{path}: cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


def _validated(model: type[SectionT], raw: dict[str, Any], path: Path) -> SectionT:
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problems = "\n".join(
            f"  {_location(item['loc'])}: {item['msg']}" for item in error.errors()
        )
        raise ConfigError(f"{path}: invalid configuration\n{problems}") from None


class _OperatorsOnly(_Section):
    operators: tuple[ConsoleOperator, ...] = Field(min_length=1)


class _OperatorsFile(_Section):
    """console.operators_file: [[console.operators]] tables and nothing else, so that the same
    lines may move between it and payouts.toml."""

    console: _OperatorsOnly


def with_file_operators(settings: Settings) -> Settings:
    """`settings` with the operators of console.operators_file added to those it lists;
    ConfigError names the file and what to fix in it."""
    path = settings.console.operators_file
    if path is None:
        return settings
    listed = _validated(_OperatorsFile, _read_toml(path), path).console.operators
    try:
        console = ConsoleSettings.model_validate(
            {
                **settings.console.model_dump(),
                "operators": [o.model_dump() for o in (*settings.console.operators, *listed)],
            }
        )
    except ValidationError as error:
        messages = "; ".join(str(item["msg"]) for item in error.errors())
        raise ConfigError(
            f"{path} with console.operators of the configuration: {messages}"
        ) from None
    return settings.model_copy(update={"console": console})
