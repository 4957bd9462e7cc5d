"""The only code that calls an SDK or a cloud API.

One module (or package) per platform: `aws/`, `digitalocean`, `heroku`, `fly`, `postgres`, `dns`,
`http`. Each maps its SDK's failures onto :mod:`bot.platforms.errors`, sets its retries and timeouts
once, and reads its credentials from the environment, so steps never see a boto3 client or a token.
"""
