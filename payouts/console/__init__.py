"""The operator web console (`payouts console`): server-rendered pages over the operator actions
of `payouts.actions`, behind a login, on a port of its own (docs/console.md)."""
