"""The one Postgres connector: every connection and pool of payouts is opened here, to the host
of the URL that takes writes. Nothing outside this package calls asyncpg's `connect` or
`create_pool` (tests/architecture checks it)."""
