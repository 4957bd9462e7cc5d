# runbook-bot as a container: `runbook-bot serve --http` on port 3000, health on /healthz.
#
#   docker build -t runbook-bot .                        # PostgreSQL client tools of major 17
#   docker build --build-arg PG_MAJOR=18 -t runbook-bot . # a source database on PostgreSQL 18
#   docker run --env-file .env -p 3000:3000 -v runbook-state:/var/lib/runbook-bot runbook-bot
#
# `docker compose up` (compose.yaml) starts it with a PostgreSQL store; docs/deploy.md covers Heroku,
# App Platform and ECS. tests/test_packaging.py checks this file and runs its HEALTHCHECK for real.

# Debian release pinned (bookworm) so the PGDG suite below is a known one, not whatever "slim" means today.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY bot ./bot
COPY templates ./templates
COPY runbooks ./runbooks
# A wheel, not the tree: the runtime stage installs exactly what a `pip install runbook-bot` would,
# package data (templates, runbooks) included, and carries no sources or build leftovers.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim-bookworm

# db.copy and db.replicate run pg_dump/pg_restore/psql, and pg_dump refuses a server of a newer major
# than its own (it reads older ones back to 9.2 fine). So the image carries one major at least as new
# as the sources a team migrates from: 17 covers every source on 17 or older, which is what managed
# services (RDS, Heroku Postgres, DigitalOcean) mostly run. It comes from the PGDG apt repository
# because Debian's own client is one fixed, older major. A source on a newer server needs a rebuild
# with `--build-arg PG_MAJOR=18`. The restore target must be the same major as the source or newer,
# which a migration's target normally is. bot/platforms/postgres/tools.py finds the tools in
# /usr/lib/postgresql/<major>/bin, so no PG_BIN_DIR is needed.
# The PGDG set-up script and signing key ship in postgresql-common (no curl, no key download); the
# last two lines fail the build, not a migration, when the tools are not the major asked for.
ARG PG_MAJOR=17
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates postgresql-common \
 && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y \
 && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
 && rm -rf /var/lib/apt/lists/* \
 && "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_dump" --version | grep -q " ${PG_MAJOR}\." \
 && "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_restore" --version | grep -q " ${PG_MAJOR}\."

COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels

# A fixed uid so a mounted volume's ownership can be set to match from outside.
RUN useradd --system --uid 10001 --user-group --home-dir /app --create-home runbook \
 && mkdir -p /var/lib/runbook-bot && chown runbook:runbook /var/lib/runbook-bot

# The SQLite store and the fingerprint key live in the state dir. No VOLUME here on purpose: an
# anonymous volume is a mount point that Fargate and Kubernetes throw away with the task, and the
# bot's ephemeral-disk check (bot/engine/store_placement.py) would take it for durable storage. Mount
# a real one (`-v runbook-state:/var/lib/runbook-bot`, EFS, a Fly volume; a named volume copies this
# folder's ownership on first use) or, for a deploy, use PostgreSQL (RUNBOOK_BOT_DB / DATABASE_URL)
# with RUNBOOK_BOT_FINGERPRINT_KEY set, which the bot then requires.
ENV RUNBOOK_BOT_STATE_DIR=/var/lib/runbook-bot \
    PORT=3000 \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER runbook

# $PORT set means the bot listens on 0.0.0.0 (bot/chat/slack: default_host), as a container must.
EXPOSE 3000
# Python's urllib, not curl (not in the image): exits 1 on a refused connection or a non-2xx (503 when
# the store is down), 0 on 200. Same one-liner in deploy/ecs-task-definition.json.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"
ENTRYPOINT ["runbook-bot", "serve", "--http"]
