"""The rehearsal world's own plumbing that talks to SDKs and servers (the rooms rule: SDK calls live
under `bot/platforms/`). `bot.sandbox` composes the world; this package holds what reaches moto,
PostgreSQL and PgBouncer for it.

    from bot.platforms.sandbox import aws, postgres
    s3 = aws.client("s3", endpoint_url="http://127.0.0.1:5000", secret_key="...")
    aws.wait_until_serving("http://127.0.0.1:5000", proc)
"""
