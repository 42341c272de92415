"""`python -m payouts`: the `payouts` command, as the supervisor starts its workers."""

import sys

from payouts.cli import main

sys.exit(main())
