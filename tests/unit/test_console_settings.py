"""The console's configuration and start-up checks, its failed-login cap and its passwords."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest
from argon2 import PasswordHasher, Type

from payouts.console.login_limits import FailedLogins
from payouts.console.passwords import MAX_CONCURRENT_CHECKS, PasswordCheck, hash_password
from payouts.console.server import MIN_SECRET_BYTES, checked_secret
from schema.errors import ConfigError
from schema.settings import ConsoleRole, Settings, load_settings, with_file_operators
from tests.clocks import Clock

if TYPE_CHECKING:
    from pathlib import Path

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
SECRET = "k" * MIN_SECRET_BYTES
ENV = {"PAYOUTS_CONSOLE_SESSION_SECRET": SECRET}


def operator_table(name: str = "olga", password_hash: str | None = None) -> str:
    return (
        f'[[console.operators]]\nname = "{name}"\nrole = "operator"\n'
        f'password_hash = "{password_hash or CHEAP.hash("pw")}"\n'
    )


def settings_from(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "payouts.toml"
    path.write_text(text)
    return load_settings(path, environ={})


def test_an_operator_is_read_with_their_role(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, "[console]\nport = 9000\n" + operator_table())
    (operator,) = settings.console.operators
    assert (operator.name, operator.role) == ("olga", ConsoleRole.OPERATOR)
    assert settings.console.port == 9000
    assert settings.console.secure_cookies is True
    assert settings.console.session_max_age_seconds == 8 * 3600
    assert checked_secret(settings, ENV) == SECRET


@pytest.mark.parametrize(
    "password_hash",
    [
        "hunter2",  # a password pasted where its hash belongs
        "$2b$12$abcdefghijklmnopqrstuuEhL8z5rJ0bH9tq0eH1kS1wG8Ujfe1eG",  # bcrypt
        PasswordHasher(type=Type.I).hash("pw"),  # argon2i, not argon2id
    ],
)
def test_a_password_hash_must_be_an_argon2id_hash(tmp_path: Path, password_hash: str) -> None:
    with pytest.raises(ConfigError) as refused:
        settings_from(tmp_path, operator_table(password_hash=password_hash))
    message = str(refused.value)
    assert "console.operators[0].password_hash" in message
    assert "payouts console hash-password" in message


def test_an_operator_is_listed_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"operators \['olga'\] are listed twice"):
        settings_from(tmp_path, operator_table() + operator_table())


def test_a_role_is_viewer_or_operator(tmp_path: Path) -> None:
    text = operator_table().replace('role = "operator"', 'role = "admin"')
    with pytest.raises(ConfigError, match=r"console\.operators\[0\]\.role"):
        settings_from(tmp_path, text)


def test_the_console_does_not_start_without_an_operator(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        checked_secret(settings_from(tmp_path, ""), ENV)
    assert "console.operators: no operator is configured" in str(refused.value)
    assert "payouts console hash-password" in str(refused.value)


def test_the_console_does_not_start_on_the_ingress_port(tmp_path: Path) -> None:
    text = "[ingress]\nport = 8443\n[console]\nport = 8443\n" + operator_table()
    with pytest.raises(ConfigError, match=r"console\.port 8443 is also ingress\.port"):
        checked_secret(settings_from(tmp_path, text), ENV)


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({}, "PAYOUTS_CONSOLE_SESSION_SECRET is not set"),
        ({"PAYOUTS_CONSOLE_SESSION_SECRET": "short"}, "PAYOUTS_CONSOLE_SESSION_SECRET has 5 bytes"),
        ({"MY_KEY": "k" * (MIN_SECRET_BYTES - 1)}, "MY_KEY has 31 bytes"),
    ],
)
def test_the_console_does_not_start_with_a_short_session_key(
    tmp_path: Path, environ: dict[str, str], problem: str
) -> None:
    text = operator_table()
    if "MY_KEY" in environ:
        text = '[console]\nsession_secret_env = "MY_KEY"\n' + text
    with pytest.raises(ConfigError) as refused:
        checked_secret(settings_from(tmp_path, text), environ)
    assert problem in str(refused.value)
    assert "console.session_secret_env" in str(refused.value)


def test_the_session_key_setting_names_a_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"console\.session_secret_env"):
        settings_from(tmp_path, '[console]\nsession_secret_env = "not a name!"\n')


def test_failed_logins_are_capped_within_the_window_then_forgotten() -> None:
    clock = Clock()
    limits = FailedLogins(max_failures=3, window_seconds=60, clock=clock)
    for _ in range(2):
        limits.failed("address:a", "name:n")
        clock.now += 10
    assert limits.retry_after("address:a") is None
    limits.failed("address:a", "name:n")
    assert limits.retry_after("address:a") == pytest.approx(40)
    assert limits.retry_after("address:b", "name:n") == pytest.approx(40)
    assert limits.retry_after("address:b", "name:m") is None
    clock.now += 41  # the first failure has left the window
    assert limits.retry_after("address:a") is None
    limits.forget("name:n")
    limits.failed("address:a")
    assert limits.retry_after("name:n") is None
    assert limits.retry_after("address:a") is not None
    limits.retract("address:a")
    assert limits.retry_after("address:a") is None


def settings_from_operators(password_hash: str) -> Settings:
    operator = {"name": "o", "role": "viewer", "password_hash": password_hash}
    return Settings.model_validate({"console": {"operators": [operator]}})


async def test_a_hash_made_for_the_configuration_verifies_its_password() -> None:
    made = hash_password("correct horse")
    assert made.startswith("$argon2id$")
    settings = settings_from_operators(made)
    check = PasswordCheck(settings.console.operators)
    assert await check.verify("o", "correct horse") is settings.console.operators[0]
    assert await check.verify("o", "wrong") is None
    assert await check.verify("nobody", "correct horse") is None


async def test_only_a_few_password_checks_run_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    check = PasswordCheck(settings_from_operators(CHEAP.hash("pw")).console.operators)
    in_flight: list[str] = []
    release = threading.Event()

    def held_check(name: str, password: str) -> None:
        in_flight.append(name)
        release.wait(timeout=10)

    monkeypatch.setattr(check, "_verify", held_check)
    burst = 3 * MAX_CONCURRENT_CHECKS
    logins = [asyncio.create_task(check.verify("o", "pw")) for _ in range(burst)]
    for _ in range(500):
        if len(in_flight) >= MAX_CONCURRENT_CHECKS:
            break
        await asyncio.sleep(0.01)
    # Time for any check past the cap to start, were there no cap.
    await asyncio.sleep(0.3)
    assert len(in_flight) == MAX_CONCURRENT_CHECKS
    release.set()
    await asyncio.gather(*logins)
    assert len(in_flight) == len(logins)


# --- console.operators_file: operators from a mounted secret -----------------------------------


def with_operators_file(tmp_path: Path, file_text: str, config_text: str = "") -> Settings:
    operators_file = tmp_path / "operators.toml"
    operators_file.write_text(file_text)
    setting = f'[console]\noperators_file = "{operators_file}"\n'
    return with_file_operators(settings_from(tmp_path, setting + config_text))


def test_operators_of_the_file_join_those_of_the_configuration(tmp_path: Path) -> None:
    viewer = operator_table("vera").replace('"operator"', '"viewer"')
    settings = with_operators_file(tmp_path, operator_table("olga") + viewer, operator_table("ivo"))
    roles = {operator.name: operator.role for operator in settings.console.operators}
    assert roles == {"ivo": ConsoleRole.OPERATOR, "olga": ConsoleRole.OPERATOR, "vera": "viewer"}
    assert checked_secret(settings, ENV) == SECRET


def test_without_an_operators_file_the_settings_are_unchanged(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, operator_table())
    assert with_file_operators(settings) is settings


def test_the_operators_file_is_an_absolute_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"console\.operators_file: .*must be an absolute path"):
        settings_from(tmp_path, '[console]\noperators_file = "operators.toml"\n')


@pytest.mark.parametrize(
    ("file_text", "problem"),
    [
        (None, "operators.toml: no such configuration file"),
        ("[[console.operators]\n", "operators.toml: not valid TOML"),
        ("", "console: Field required"),
        ("[console]\noperators = []\n", "console.operators: Tuple should have at least 1 item"),
        ('[console]\nport = 1\n[[console.operators]]\nname = "x"\n', "console.port: Extra inputs"),
        (operator_table(password_hash="hunter2"), "console.operators[0].password_hash: Value"),
        (operator_table() + operator_table(), "operators ['olga'] are listed twice"),
    ],
    ids=["missing", "not-toml", "empty", "no-operator", "other-setting", "password", "twice"],
)
def test_a_bad_operators_file_is_named_with_what_to_fix(
    tmp_path: Path, file_text: str | None, problem: str
) -> None:
    operators_file = tmp_path / "operators.toml"
    if file_text is not None:
        operators_file.write_text(file_text)
    settings = settings_from(tmp_path, f'[console]\noperators_file = "{operators_file}"\n')
    with pytest.raises(ConfigError) as refused:
        with_file_operators(settings)
    assert str(operators_file) in str(refused.value)
    assert problem in str(refused.value)


def test_an_operator_is_not_in_both_the_file_and_the_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        with_operators_file(tmp_path, operator_table("olga"), operator_table("olga"))
    assert "with console.operators of the configuration" in str(refused.value)
    assert "operators ['olga'] are listed twice" in str(refused.value)


def test_the_operators_file_is_a_directory(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, f'[console]\noperators_file = "{tmp_path}"\n')
    with pytest.raises(ConfigError, match="cannot be read: Is a directory"):
        with_file_operators(settings)
