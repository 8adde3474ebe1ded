"""API keys: hashed storage, authentication, per-key accounting and limits."""
