"""The independent health monitor: its own process, so it still reports when the server hangs."""
