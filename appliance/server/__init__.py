"""The API/console daemon: FastAPI app, TLS, auth wiring."""
