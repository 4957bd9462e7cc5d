# Two commands do everything on a fresh machine:
#   make run    install, then run the bot (without Slack settings: the rehearsal of seed 000 on the embedded world)
#   make test   install (with Prism and PgBouncer), then run the whole test suite
.PHONY: run test bench

run:
	@scripts/setup.sh
	@.venv/bin/runbook-bot serve

test:
	@scripts/setup.sh --test
	@.venv/bin/python -m pytest -q -n 2 --dist loadfile

bench:
	@scripts/setup.sh --test
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; .venv/bin/python $$b --quick || exit 1; done
