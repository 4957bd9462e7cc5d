#!/usr/bin/env bash
# Install everything runbook-bot and its tests need into this checkout: a virtualenv in .venv,
# Prism (the DigitalOcean contract mock) in .tools/, and Debian's PgBouncer for the pooler tests.
# Idempotent: a second run only checks. Usage: scripts/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
if [ "$want_test" = 1 ]; then
  .venv/bin/pip install -q -e '.[test]'
else
  .venv/bin/pip install -q -e .
fi

# The rehearsal (make run without Slack) needs a PostgreSQL: the local one on 127.0.0.1:5432 when it
# answers, else an embedded server from a wheel (pgserver ships the binaries).
if ! .venv/bin/python -c "import psycopg; psycopg.connect(host='127.0.0.1', port=5432, user='postgres', dbname='postgres', connect_timeout=2).close()" 2>/dev/null; then
  .venv/bin/pip install -q -e '.[embedded-postgres]'
fi

if [ "$want_test" = 1 ]; then
  if [ ! -x .tools/node_modules/.bin/prism ]; then
    mkdir -p .tools
    (cd .tools && npm install --silent --no-audit --no-fund --prefix . @stoplight/prism-cli@5 >/dev/null)
  fi
  # PgBouncer for the pooler tests; pgcopydb so db.copy's pgcopydb strategy is tested too.
  missing=""
  [ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || missing="$missing pgbouncer"
  command -v pgcopydb >/dev/null 2>&1 || missing="$missing pgcopydb"
  if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
  fi
fi
