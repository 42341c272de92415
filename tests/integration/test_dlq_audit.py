"""`payouts dlq replay`, `purge` and `import`, run as an engineer runs them, write the audit
trail as the OS user who ran them, how each ended included."""

from __future__ import annotations

import getpass
import json
import socket
from typing import TYPE_CHECKING

import pytest

from tests.integration.pipeline import worker_running
from tests.integration.test_dead_letters import Scene, payout, wait_for_depth

if TYPE_CHECKING:
    from pathlib import Path

    from tests.services import Services

ENTRIES = """
SELECT coalesce(json_agg(json_build_object('actor', actor, 'actor_kind', actor_kind,
    'action', action, 'target', target, 'source', source, 'result', result, 'detail', detail)
    ORDER BY id), '[]')::text
FROM audit_log
"""


@pytest.fixture
def scene(services: Services, database_url: str, tmp_path: Path) -> Scene:
    return Scene(services, database_url, tmp_path)


async def test_dlq_commands_write_the_audit_trail_as_the_os_user(
    scene: Scene, tmp_path: Path
) -> None:
    export = tmp_path / "dead.jsonl"
    async with worker_running(scene.settings()):
        await scene.publish([payout("eve", 2, create_account=False) for _ in range(2)])
        await wait_for_depth(scene, scene.topology.dead_letter_queue, 2, "dead-lettered")
    assert scene.dlq_json("replay", "--reason", "business", "--dry-run")["selected"] == 2
    assert scene.dlq_json("export", str(export))["exported"] == 2
    refused = scene.dlq("purge", "--all", stdin="")
    assert "without --yes" in refused.stderr
    assert scene.dlq_json("purge", "--all", "--yes")["purged"] == 2
    assert scene.dlq_json("import", str(export))["imported"] == 2

    entries = json.loads(await scene.fetchval(ENTRIES))
    assert {(e["actor"], e["actor_kind"], e["source"]) for e in entries} == {
        (getpass.getuser(), "cli", socket.gethostname())
    }
    assert [(e["action"], e["target"], e["result"]) for e in entries] == [
        ("dlq.replay", "--reason business", "ok"),
        ("dlq.purge", "--all", "failed"),
        ("dlq.purge", "--all", "ok"),
        ("dlq.import", str(export), "ok"),
    ]
    assert entries[0]["detail"]["dry_run"] is True
    assert entries[1]["detail"] == {
        "error": "SystemExit: payouts dlq: refusing to purge 2 messages without --yes"
    }
    assert (entries[2]["detail"]["selected"], entries[2]["detail"]["purged"]) == (2, 2)
    assert entries[3]["detail"] == {"imported": 2}
