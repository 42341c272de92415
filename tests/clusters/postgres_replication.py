"""A Postgres primary with a synchronous streaming standby, beside the machine's default server.

Both run as the postgres user (the server refuses root) from data directories of a temporary
directory owned by postgres, on their own ports and socket directories, trusting 127.0.0.1.
A commit is acknowledged only once the standby has it (synchronous_commit = on with the standby
named in synchronous_standby_names), so after kill -9 of the primary and promotion of the
standby, every acknowledged commit must still be there.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from payouts.actions.setup import apply_migrations
from tests.availability import unavailable
from tests.clusters.commands import kill_and_wait, run
from tests.e2e.stack import alive, free_port
from tests.polling import wait_until

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
STANDBY_NAME = "payouts_standby"
# Names the pid of the run, so a later run can tell what a dead one left behind.
ROOT_PREFIX = "payouts-pg-replication-"
STANDBY_STATE = "SELECT state FROM pg_stat_replication WHERE application_name = $1"
STANDBY_SYNC_STATE = "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1"
REPLAYED_SINCE = "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn"
PG_HBA = """\
local all all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
"""
SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
synchronous_commit = on
max_connections = 100
shared_buffers = 32MB
"""
# Only on the standby: it retries reading WAL every 5 s by default, so a promotion waited 5 s.
STANDBY_SETTINGS = """
cluster_name = '{name}'
wal_retrieve_retry_interval = 200ms
"""


@dataclass
class PostgresServer:
    role: str
    data: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if alive(pid) else None


class PostgresReplication:
    """Start with `start()`, always `close()`; `url(db)` is the multi-host URL clients use."""

    def __init__(self) -> None:
        if not (POSTGRES_BIN / "initdb").exists():
            unavailable(
                f"no PostgreSQL 15 server in {POSTGRES_BIN} (apt-get install postgresql-15)"
            )
        # Not under pytest's tmp_path: its parents are closed to the postgres user.
        self.root = Path(tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-"))
        postgres = pwd.getpwnam("postgres")
        shutil.chown(self.root, postgres.pw_uid, postgres.pw_gid)
        self.primary = PostgresServer("primary", self.root / "primary", free_port())
        self.standby = PostgresServer("standby", self.root / "standby", free_port())
        self.timings: dict[str, float] = {}

    def url(self, database: str = "postgres") -> str:
        """Both servers; clients pick whichever accepts writes."""
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"

    async def _as_postgres(self, tool: str, *arguments: str) -> str:
        return await run("runuser", "-u", "postgres", "--", str(POSTGRES_BIN / tool), *arguments)

    async def _pg_ctl_start(self, server: PostgresServer) -> None:
        await self._as_postgres(
            "pg_ctl", "-D", str(server.data), "-l", str(self.root / f"{server.role}.log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip

    async def start(self) -> None:
        began = time.monotonic()
        primary, standby = self.primary, self.standby
        await self._as_postgres(
            "initdb", "-D", str(primary.data), "-U", "postgres", "-A", "trust", "--no-sync",
            "--no-instructions",
        )  # fmt: skip
        (primary.data / "pg_hba.conf").write_text(PG_HBA)
        with (primary.data / "postgresql.conf").open("a") as conf:
            conf.write(SETTINGS.format(port=primary.port, socket_dir=self.root))
        await self._pg_ctl_start(primary)
        await self._as_postgres(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(standby.data), "-R", "-X", "stream", "--checkpoint=fast",
        )  # fmt: skip
        with (standby.data / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"port = {standby.port}\n")
            conf.write(STANDBY_SETTINGS.format(name=STANDBY_NAME))
        await self._pg_ctl_start(standby)
        # Naming the standby before it streams makes every commit wait for it (CREATE DATABASE
        # hung): wait until it streams, then make it synchronous.
        await self._wait_for_replication(STANDBY_STATE, "streaming")
        conn = await asyncpg.connect(primary.url())
        try:
            await conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '\"{STANDBY_NAME}\"'")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()
        await self._wait_for_replication(STANDBY_SYNC_STATE, "sync")
        self.timings["start"] = time.monotonic() - began

    async def _wait_for_replication(self, query: str, wanted: str) -> None:

        async def reached() -> bool:
            conn = await asyncpg.connect(self.primary.url())
            try:
                return bool(await conn.fetchval(query, STANDBY_NAME) == wanted)
            finally:
                await conn.close()

        await wait_until(reached, f"{query} = {wanted}; {self.log_tail()}", 60)

    async def create_database(self, name: str) -> str:
        """A new migrated database; returns its multi-host URL."""
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(self.url(name))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        return self.url(name)

    async def standby_replayed(self) -> None:
        """Wait until the standby has replayed all the primary has written so far: a commit
        acknowledged under synchronous_commit = on is flushed there, but maybe not yet visible."""
        primary = await asyncpg.connect(self.primary.url())
        try:
            written = await primary.fetchval("SELECT pg_current_wal_lsn()")
        finally:
            await primary.close()
        standby = await asyncpg.connect(self.standby.url())
        try:

            async def replayed() -> bool:
                return bool(await standby.fetchval(REPLAYED_SINCE, written))

            await wait_until(replayed, f"standby replay past {written}", 30)
        finally:
            await standby.close()

    async def kill_primary(self) -> None:
        """kill -9 the primary's postmaster, as a crash would (its backends notice and exit)."""
        pid = self.primary.postmaster_pid()
        assert pid is not None, "the primary is not running"
        await kill_and_wait(pid)

    async def promote_standby(self) -> None:
        await self._as_postgres("pg_ctl", "-D", str(self.standby.data), "-w", "-t", "60", "promote")

    async def close(self) -> None:
        """Stop both servers at once (the data is thrown away) and remove everything."""
        began = time.monotonic()
        for server in (self.primary, self.standby):
            pid = server.postmaster_pid()
            if pid is not None:
                await kill_and_wait(pid)
        # Backends of a killed postmaster exit by themselves once they notice; wait for them
        # so no process keeps the directory we remove.
        await asyncio.to_thread(shutil.rmtree, self.root, ignore_errors=True)
        self.timings["close"] = time.monotonic() - began

    @staticmethod
    async def sweep_stale() -> None:
        """Stop the servers and remove the directories of runs whose pytest died before its
        teardown."""
        for root in await asyncio.to_thread(_roots_of_dead_runs):
            for role in ("primary", "standby"):
                pid = PostgresServer(role, root / role, 0).postmaster_pid()
                if pid is not None:
                    await kill_and_wait(pid)
            await asyncio.to_thread(shutil.rmtree, root, ignore_errors=True)

    def log_tail(self, lines: int = 15) -> str:
        tails = []
        for log in sorted(self.root.glob("*.log")):
            tails.append(
                f"--- {log.name}\n"
                + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            )
        return "\n".join(tails)


def _roots_of_dead_runs() -> list[Path]:
    roots = Path(tempfile.gettempdir()).glob(f"{ROOT_PREFIX}*")
    owners = {root: root.name.removeprefix(ROOT_PREFIX).split("-")[0] for root in roots}
    return [root for root, pid in owners.items() if pid.isdigit() and not alive(int(pid))]
