"""PostgreSQL: connections with pinned session settings, pooler detection, preflight, copy, verify.

    from bot.platforms.postgres import connect
    ep = connect.parse_url(url, label="source")      # the password stays in memory, registered as a secret
    with connect.connect(ep) as conn:                 # TimeZone, DateStyle, ... pinned for stable text forms
        conn.execute("select 1")

Modules: `connect` (endpoints and connections), `pooler` (is this PgBouncer?), `tools` (find pg_dump /
pg_restore of the right version), `preflight` (facts for the plan), `copy` (the strategies),
`verify` (row counts, checksums, sequences, extensions, large objects), `endpoints` (resolve a
runbook's `source`/`target` into an endpoint), `post_data` (a copy's post-data split into per-table
batches and early foreign keys), `reaper` (a copy's processes die with the bot; what a killed one left
is found), `schema_compare`, `replication`.
"""

PLATFORM = "postgres"
