"""The `payouts` commands that change records (accounts, orders and console sessions here;
proof images in test_operator_commands.py) write the audit trail as the OS user who ran them, in
the same transaction as the change."""

from __future__ import annotations

import getpass
import json
import socket
from typing import TYPE_CHECKING

from tests.services import fetch_value

if TYPE_CHECKING:
    from tests.e2e.stack import Stack

ENTRIES = """
SELECT json_agg(json_build_object('actor', actor, 'actor_kind', actor_kind, 'action', action,
    'target', target, 'source', source, 'result', result, 'detail', detail) ORDER BY id)::text
FROM audit_log
"""


async def test_account_create_is_audited_as_the_os_user(stack: Stack) -> None:
    for _ in range(2):
        done = stack.run("account", "create", "--user", "player-7", "--currency", "COIN")
        assert done.returncode == 0, done.stderr
    entries = json.loads(await fetch_value(stack.database_url, ENTRIES))
    assert entries == [
        {"actor": getpass.getuser(), "actor_kind": "cli", "action": "account.create",
         "target": "player-7 COIN", "source": socket.gethostname(), "result": "ok",
         "detail": {"created": created, "credited_held_payouts": 0}}
        for created in (True, False)
    ]  # fmt: skip


async def test_an_account_no_callback_could_credit_is_refused_and_audited(stack: Stack) -> None:
    done = stack.run("account", "create", "--user", "cli\x01x", "--currency", "COIN")
    assert done.returncode == 1
    assert "user_id 'cli\\x01x': give 1 to 128 printable characters" in done.stderr
    assert await fetch_value(stack.database_url, "SELECT count(*) FROM accounts") == 0
    (entry,) = json.loads(await fetch_value(stack.database_url, ENTRIES))
    assert (entry["action"], entry["result"]) == ("account.create", "failed")
    assert entry["detail"]["error"].startswith("AccountRefused")


async def test_order_commands_are_audited_with_how_they_ended(stack: Stack) -> None:
    order = ("--provider", "billing", "--order-id", "APP-1")
    terms = ("--user", "player-1", "--item", "gem_pack", "--amount", "500")
    assert stack.run("order", "register", *order, *terms).returncode == 0
    assert stack.run("order", "register", *order, *terms).returncode == 0
    assert stack.run("order", "register", *order, "--user", "player-2", "--item",
                     "gem_pack", "--amount", "500").returncode == 1  # fmt: skip
    assert stack.run("order", "cancel", *order).returncode == 0
    assert stack.run("order", "cancel", *order).returncode == 1
    entries = json.loads(await fetch_value(stack.database_url, ENTRIES))
    assert [(e["action"], e["target"], e["result"], e["detail"]) for e in entries] == [
        ("order.register", "billing APP-1", "ok", {"result": "registered"}),
        ("order.register", "billing APP-1", "ok", {"result": "already_registered"}),
        ("order.register", "billing APP-1", "failed", {"result": "conflict"}),
        ("order.cancel", "billing APP-1", "ok", {}),
        ("order.cancel", "billing APP-1", "failed", {"reason": "no pending order under that id"}),
    ]
    assert {(e["actor"], e["actor_kind"]) for e in entries} == {(getpass.getuser(), "cli")}


OPEN_SESSIONS = """
INSERT INTO console_sessions (token_sha256, operator, client_address, expires_at)
SELECT sha256(convert_to(token, 'UTF8')), operator, '192.0.2.8', now() + interval '1 hour'
FROM (VALUES ('a', 'olga'), ('b', 'olga'), ('c', 'vic')) AS sessions (token, operator)
"""
OPEN_BY_OPERATOR = """
SELECT json_object_agg(operator, open)::text FROM (
    SELECT operator, count(*) FILTER (WHERE revoked_at IS NULL) AS open
    FROM console_sessions GROUP BY operator) AS counts
"""


async def test_console_sign_out_revokes_an_operators_sessions_and_is_audited(stack: Stack) -> None:
    await fetch_value(stack.database_url, OPEN_SESSIONS)
    first = stack.run("console", "sign-out", "olga", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"operator": "olga", "revoked_sessions": 2}
    again = stack.run("console", "sign-out", "olga")
    assert (again.returncode, again.stdout) == (0, "operator: olga\nrevoked_sessions: 0\n")
    assert json.loads(await fetch_value(stack.database_url, OPEN_BY_OPERATOR)) == {
        "olga": 0,
        "vic": 1,
    }
    entries = json.loads(await fetch_value(stack.database_url, ENTRIES))
    assert entries == [
        {"actor": getpass.getuser(), "actor_kind": "cli", "action": "console.sign-out",
         "target": "olga", "source": socket.gethostname(), "result": "ok",
         "detail": {"revoked_sessions": revoked}}
        for revoked in (2, 0)
    ]  # fmt: skip
