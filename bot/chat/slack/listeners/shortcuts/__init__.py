"""Global shortcuts (the lightning-bolt menu)."""
