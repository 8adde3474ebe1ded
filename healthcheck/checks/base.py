"""What a check is and what it returns."""

from __future__ import annotations

import asyncio
import time

from appliance.health.status import Result

UNREACHABLE = "server unreachable (see server.liveness)"


class Check:
    """Subclasses set ``name``, ``period`` and ``timeout`` and implement ``probe``."""

    name: str = "check"
    period: float = 60.0
    timeout: float = 10.0
    affects_server: bool = False  # a failure here may be cured by restarting the server

    async def probe(self) -> Result:
        raise NotImplementedError

    async def run(self) -> tuple[Result, float]:
        start = time.monotonic()
        try:
            # probes enforce ``timeout`` themselves with a precise message; this is the backstop
            result = await asyncio.wait_for(self.probe(), self.timeout * 1.5 + 0.5)
        except asyncio.TimeoutError:
            result = Result.failed(f"no answer within {self.timeout:g} s")
        except Exception as exc:  # a probe bug must not kill the monitor
            result = Result.failed(f"check error: {type(exc).__name__}: {exc}")
        return result, time.monotonic() - start
