"""Events API listeners (App Home)."""
