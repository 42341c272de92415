"""The composition root: the `payouts` command, and the operator actions (`payouts.actions`) that
it and the web console share. The one layer that may import the ingress and the workers."""
