"""The box's configuration with secrets removed: settings in effect, the admin's overlay, what the state dir holds."""

from __future__ import annotations

import json
import stat

from appliance.diagnostics.collectors.base import Collector, Context, Files, as_json
from appliance.settings import ADMIN_FILE, PREVIOUS_ADMIN_FILE, Settings

SECRET_SUFFIXES = (".key", ".secret", ".pem")


class BoxConfig(Collector):
    name = "box_config"
    gathers = "settings in effect and the admin's settings.json (no secrets), names/sizes/modes of state files"

    def collect(self, ctx: Context) -> Files:
        box = ctx.settings
        effective = box if isinstance(box, Settings) else Settings(**box.model_dump())
        state: list[dict] = []
        if box.state_dir.is_dir():
            for p in sorted(box.state_dir.rglob("*")):
                if p.is_file() and not p.relative_to(box.state_dir).parts[0] == "diagnostics":
                    st = p.stat()
                    state.append({"path": p.relative_to(box.state_dir).as_posix(), "size": st.st_size,
                                  "mode": stat.filemode(st.st_mode),
                                  "copied": "no (a secret)" if p.name.endswith(SECRET_SUFFIXES) else "no"})
        admin = {}
        for name in (ADMIN_FILE, PREVIOUS_ADMIN_FILE):
            path = box.state_dir / name
            if path.is_file():
                try:
                    admin[name] = json.loads(path.read_text())
                except ValueError as exc:
                    admin[name] = f"unreadable: {exc}"
        etc = box.vendor_key.parent
        return {"settings.json": as_json({"effective": effective.model_dump(mode="json"),
                                          "set_by_flags_or_environment": sorted(box.pinned),
                                          "admin_overlay": admin}),
                "state-files.json": as_json(state),
                "etc-appliance.json": as_json(sorted(p.name for p in etc.iterdir()) if etc.is_dir() else
                                              f"{etc} does not exist")}
