"""Contracts shared by the ingress and the workers: settings, queue messages, broker topology, SQL.

`schema` is also the name of an unrelated PyPI package; `payouts` refuses to start when that one
shadows ours (see `payouts.cli`), so an accidental install cannot silently change behaviour.
"""

IS_PAYOUTS_SCHEMA = True
