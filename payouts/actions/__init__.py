"""What an operator can do, for every front end (the `payouts` command, the web console): each
action takes the checked settings and plain values, returns plain data, and raises a
`schema.errors.PayoutsError` that says what to fix. None prints, prompts or exits."""
