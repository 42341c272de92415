"""The operators' passwords: argon2id hashes made for the configuration, and the check at login,
which takes as long for a name nobody has as for a wrong password, and of which only a few run
at once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import VerificationError
from starlette.concurrency import run_in_threadpool

if TYPE_CHECKING:
    from schema.settings import ConsoleOperator

__all__ = ["MAX_CONCURRENT_CHECKS", "PasswordCheck", "hash_password"]

# Each check holds its hash's memory cost (64 MiB at argon2-cffi's defaults) while it runs: a
# burst of logins waits its turn instead of taking the console past its memory limit.
MAX_CONCURRENT_CHECKS = 2


def hash_password(password: str) -> str:
    """An argon2id hash of `password` with argon2-cffi's defaults (RFC 9106's low-memory
    profile), to paste into `[[console.operators]]`."""
    return PasswordHasher().hash(password)


class PasswordCheck:
    def __init__(self, operators: tuple[ConsoleOperator, ...]) -> None:
        self._operators = {operator.name: operator for operator in operators}
        # A name nobody has is checked against a hash of the same cost as a real one, so the
        # time of an answer does not tell which names exist.
        costs = extract_parameters(operators[0].password_hash)
        self._dummy_hash = PasswordHasher.from_parameters(costs).hash("no one's password")
        self._running = asyncio.Semaphore(MAX_CONCURRENT_CHECKS)

    async def verify(self, name: str, password: str) -> ConsoleOperator | None:
        """The operator `name` if `password` is theirs. Slow by design (tens of milliseconds of
        CPU and the hash's memory), so it runs in a worker thread, at most
        `MAX_CONCURRENT_CHECKS` at once; the others wait without holding a thread."""
        async with self._running:
            return await run_in_threadpool(self._verify, name, password)

    def _verify(self, name: str, password: str) -> ConsoleOperator | None:
        operator = self._operators.get(name)
        try:
            PasswordHasher().verify(
                operator.password_hash if operator else self._dummy_hash, password
            )
        except VerificationError:
            return None
        return operator
