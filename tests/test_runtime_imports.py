"""The box's runtime loads with torch, transformers and diffusers unavailable, as on the shipped image."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("torch", "transformers", "diffusers", "onnx", "gguf")

_PROBE = textwrap.dedent(f"""
    import importlib, pkgutil, sys
    from importlib.abc import MetaPathFinder

    BLOCKED = {BLOCKED!r}

    class Block(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is not on the box")
            return None

    sys.meta_path.insert(0, Block())
    import appliance, healthcheck
    names = []
    for pkg in (appliance, healthcheck):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if info.name.startswith("appliance.factory") or info.name.endswith("__main__"):
                continue
            importlib.import_module(info.name)
            names.append(info.name)

    from appliance.cli.main import app
    from appliance.server.app import create_app
    from appliance.settings import Settings
    create_app(Settings(state_dir=sys.argv[1]))
    from typer.main import get_command
    get_command(app)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print(len(names))
""")


def test_runtime_imports_without_the_training_stack(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.strip()) > 30  # it really walked the runtime's modules
