"""The `payouts` commands that change records (accounts and orders here; proof images in
test_operator_commands.py) write the audit trail as the OS user who ran them, in the same
transaction as the change."""

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
