"""`python -m bot` is the `runbook-bot` command."""

from bot.cli import main

raise SystemExit(main())
