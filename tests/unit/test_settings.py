"""The configuration file is validated at start-up with errors that name the file and the key."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from ingress.app import create_app
from schema.envelopes import MAX_EVENTS_PER_ENVELOPE
from schema.errors import ConfigError
from schema.settings import AccountPolicy, database_hosts, load_settings

if TYPE_CHECKING:
    from pathlib import Path

VALID_PROVIDER = """
[[providers]]
name = "ow"
protocol = "offerwall_md5"
route = "/cb/ow"
secret_env = "OW_KEY"
default_currency = "COIN"
max_amount = "500.50"
account_policy = "require_existing"
ip_allowlist = ["198.51.100.0/24"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "payouts.toml"
    path.write_text(text)
    return path


def test_example_config_loads_and_builds_the_app() -> None:
    from pathlib import Path

    settings = load_settings(Path("deploy/payouts.example.toml"), environ={})
    assert {p.protocol for p in settings.providers} == {
        "offerwall_md5",
        "adjoe",
        "aigame_payout",
        "wallet_billing",
    }
    lines = Path("deploy/local/example-secrets.env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert create_app(settings, env) is not None


def test_valid_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, VALID_PROVIDER), environ={})
    (instance,) = settings.providers
    assert instance.max_amount == Decimal("500.50")
    assert instance.account_policy is AccountPolicy.REQUIRE_EXISTING


def test_environment_overrides_the_service_urls(tmp_path: Path) -> None:
    env = {"PAYOUTS_DATABASE_URL": "postgresql://x@db/p", "PAYOUTS_BROKER_URL": "amqp://mq/"}
    settings = load_settings(write(tmp_path, VALID_PROVIDER), environ=env)
    assert (settings.database.url, settings.broker.urls) == (
        "postgresql://x@db/p?target_session_attrs=read-write",
        ("amqp://mq/",),
    )


@pytest.mark.parametrize(
    ("url", "read_write"),
    [
        (
            "postgresql://u:pw@h1:5432,h2:5433/payouts",
            "postgresql://u:pw@h1:5432,h2:5433/payouts?target_session_attrs=read-write",
        ),
        (
            "postgresql://u@h1:5432,h2:5433/payouts?target_session_attrs=read-write",
            "postgresql://u@h1:5432,h2:5433/payouts?target_session_attrs=read-write",
        ),
        (
            "postgresql://u@[::1]:5432,db.example:5433/p?sslmode=require",
            "postgresql://u@[::1]:5432,db.example:5433/p?sslmode=require"
            "&target_session_attrs=read-write",
        ),
        (
            "postgres:///p?host=/run/pg",
            "postgres:///p?host=/run/pg&target_session_attrs=read-write",
        ),
    ],
)
def test_every_database_url_asks_for_a_server_that_takes_writes(
    tmp_path: Path, url: str, read_write: str
) -> None:
    """Left out, target_session_attrs=read-write is added: it also outranks a
    PGTARGETSESSIONATTRS in the environment, which asyncpg reads only when the URL is silent."""
    settings = load_settings(write(tmp_path, ""), environ={"PAYOUTS_DATABASE_URL": url})
    assert settings.database.url == read_write


@pytest.mark.parametrize(
    ("url", "hosts"),
    [
        ("postgresql://u:pw@h1:5432,h2/payouts", (("h1", 5432), ("h2", None))),
        ("postgresql://u@[::1]:5433,10.0.0.2/p", (("::1", 5433), ("10.0.0.2", None))),
        ("postgresql://u@%2Frun%2Fpostgresql/p", (("/run/postgresql", None),)),
        ("postgres:///p?host=/run/pg", ()),
    ],
)
def test_the_hosts_of_a_database_url_are_read_in_order(
    url: str, hosts: tuple[tuple[str, int | None], ...]
) -> None:
    """What the connector tries in turn (database/connection.py); none leaves the host to
    asyncpg's defaults."""
    assert database_hosts(url) == hosts


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql://u@h1,h2/p?target_session_attrs=standby",
            r"database\.url: .*target_session_attrs=standby .*use target_session_attrs=read-write",
        ),
        ("postgresql://u@h1,h2/p?target_session_attrs=any", "target_session_attrs=any"),
        ("postgresql://u@h1,h2/p?target_session_attrs=read-only", "target_session_attrs=read-only"),
        ("postgresql://u@h1:5432,h2:x/p", r"cannot read the host 'h2:x'"),
        ("postgresql://u@h1:5432,,h2/p", r"cannot read the host ''"),
        ("postgresql://u@h1:70000/p", r"cannot read the host 'h1:70000'"),
        ("mysql://u@h1/p", "must be a postgresql:// URL"),
    ],
)
def test_a_database_url_that_could_land_on_a_standby_or_cannot_be_read_is_refused(
    tmp_path: Path, url: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, ""), environ={"PAYOUTS_DATABASE_URL": url})


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        (
            'max_amount = "500.50"',
            "max_amount = 500.5",
            r"providers\[0\]\.max_amount: .*not a float",
        ),
        ('max_amount = "500.50"', 'max_amount = "-1"', r"providers\[0\]\.max_amount"),
        ('route = "/cb/ow"', 'route = "cb"', r"providers\[0\]\.route"),
        ('secret_env = "OW_KEY"', 'secret_env = "hunter2 secret"', "must name environment"),
        ('secret_env = "OW_KEY"', 'secret_env = ["OW_KEY", "OW_KEY"]', "same environment variable"),
        (
            'secret_env = "OW_KEY"',
            'secret_env = ["A", "B", "C", "D"]',
            r"providers\[0\]\.secret_env",
        ),
        ('secret_env = "OW_KEY"', "secret_env = []", r"providers\[0\]\.secret_env"),
        ('account_policy = "require_existing"', 'account_policy = "maybe"', "account_policy"),
        ('ip_allowlist = ["198.51.100.0/24"]', 'ip_allowlist = ["nope"]', "ip_allowlist"),
        ('name = "ow"', 'name = "ow"\nsurprise = 1', r"providers\[0\]\.surprise: Extra inputs"),
    ],
)
def test_bad_values_name_the_file_and_the_key(
    tmp_path: Path, replace: str, by: str, message: str
) -> None:
    path = write(tmp_path, VALID_PROVIDER.replace(replace, by))
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(path, environ={})
    assert str(path) in str(raised.value)


def test_duplicate_routes_are_refused(tmp_path: Path) -> None:
    twice = VALID_PROVIDER + VALID_PROVIDER.replace('name = "ow"', 'name = "ow2"')
    with pytest.raises(ConfigError, match="share the route"):
        load_settings(write(tmp_path, twice), environ={})


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[[providers]\n"), environ={})
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(tmp_path / "absent.toml", environ={})


def test_missing_secret_names_the_variable_and_the_instance(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, VALID_PROVIDER), environ={})
    with pytest.raises(ConfigError, match="'ow': environment variable OW_KEY is not set"):
        create_app(settings, environ={})


def test_unknown_protocol_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, VALID_PROVIDER.replace('"offerwall_md5"', '"carrier_pigeon"'))
    with pytest.raises(
        ConfigError, match="known protocols: adjoe, aigame_payout, offerwall_md5, wallet_billing"
    ):
        create_app(load_settings(path, environ={}), environ={"OW_KEY": "k"})


def test_several_secrets_each_must_be_set(tmp_path: Path) -> None:
    rotating = VALID_PROVIDER.replace('secret_env = "OW_KEY"', 'secret_env = ["OW_KEY", "OW_NEXT"]')
    settings = load_settings(write(tmp_path, rotating), environ={})
    assert settings.providers[0].secret_env == ("OW_KEY", "OW_NEXT")
    with pytest.raises(ConfigError, match="OW_NEXT is not set"):
        create_app(settings, environ={"OW_KEY": "k"})
    assert create_app(settings, environ={"OW_KEY": "k", "OW_NEXT": "n"}) is not None


@pytest.mark.parametrize("route", ["/healthz", "/readyz", "/metrics"])
def test_a_provider_cannot_take_the_ingresss_own_routes(tmp_path: Path, route: str) -> None:
    with pytest.raises(ConfigError, match="the ingress's own"):
        load_settings(write(tmp_path, VALID_PROVIDER.replace("/cb/ow", route)), environ={})


def test_metrics_are_private_by_default_and_the_allowlist_is_configurable(tmp_path: Path) -> None:
    from ipaddress import ip_address

    default = load_settings(write(tmp_path, VALID_PROVIDER), environ={}).ingress
    assert any(ip_address("10.2.3.4") in network for network in default.metrics_allowlist)
    assert not any(ip_address("203.0.113.9") in net for net in default.metrics_allowlist)
    custom = load_settings(
        write(tmp_path, '[ingress]\nmetrics_allowlist = ["192.0.2.0/24"]\n' + VALID_PROVIDER),
        environ={},
    ).ingress
    assert [str(network) for network in custom.metrics_allowlist] == ["192.0.2.0/24"]


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("[worker]\nstatus_port = 70000", "worker.status_port"),
        ("[worker]\nqueue_sample_seconds = 0", "worker.queue_sample_seconds"),
        (
            "[database]\nidle_in_transaction_timeout_seconds = 0.5",
            "database.idle_in_transaction_timeout_seconds",
        ),
        ("[database]\nconnect_timeout_seconds = 0", "database.connect_timeout_seconds"),
        ("[database]\nconnect_timeout_seconds = 61", "database.connect_timeout_seconds"),
        ("[ingress]\nmetrics_allowlist = ['not a network']", "ingress.metrics_allowlist[0]"),
    ],
)
def test_operability_settings_are_validated(tmp_path: Path, section: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load_settings(write(tmp_path, section + "\n" + VALID_PROVIDER), environ={})


def test_the_failed_verification_cap_is_per_instance(tmp_path: Path) -> None:
    capped = VALID_PROVIDER + "failed_verifications_per_minute = 5\nstore_device_ids = true\n"
    (instance,) = load_settings(write(tmp_path, capped), environ={}).providers
    assert (instance.failed_verifications_per_minute, instance.store_device_ids) == (5, True)
    with pytest.raises(ConfigError, match="failed_verifications_per_minute"):
        load_settings(write(tmp_path, VALID_PROVIDER + "failed_verifications_per_minute = 0\n"), {})


def test_a_frozen_process_transaction_timeout_reaches_postgres_in_milliseconds(
    tmp_path: Path,
) -> None:
    default = load_settings(write(tmp_path, VALID_PROVIDER), environ={}).database
    assert default.server_settings() == {"idle_in_transaction_session_timeout": "10000"}
    tuned = load_settings(
        write(tmp_path, "[database]\nidle_in_transaction_timeout_seconds = 2.5\n" + VALID_PROVIDER),
        environ={},
    ).database
    assert tuned.server_settings() == {"idle_in_transaction_session_timeout": "2500"}


@pytest.mark.parametrize("events", [0, MAX_EVENTS_PER_ENVELOPE + 1])
def test_events_per_message_stay_within_the_envelope_contract(tmp_path: Path, events: int) -> None:
    section = f"[broker]\nmax_events_per_message = {events}\n"
    with pytest.raises(ConfigError, match=r"broker\.max_events_per_message"):
        load_settings(write(tmp_path, section + VALID_PROVIDER), environ={})


def test_one_event_per_message_is_a_valid_setting(tmp_path: Path) -> None:
    section = "[broker]\nmax_events_per_message = 1\n"
    settings = load_settings(write(tmp_path, section + VALID_PROVIDER), environ={})
    assert settings.broker.max_events_per_message == 1
