"""Health checks: each has a name, a period, a timeout, and gives a result with a reason a person can act on."""
