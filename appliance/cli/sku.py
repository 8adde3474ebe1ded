"""``appliance sku detect``: this host's fingerprint and the profile it matches."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from appliance.sku.detect import detect as detect_host
from appliance.sku.detect import mismatches
from appliance.sku.profiles import known_profiles, load_profile

app = typer.Typer(help="SKU identity.", no_args_is_help=True)


@app.command("detect")
def detect(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Print the fingerprint (CPU model and probed flags, or GPU, driver, TensorRT) and the matching profile."""
    fp = detect_host()
    verdicts = {name: mismatches(load_profile(name), fp) for name in known_profiles()}
    matched = [n for n, r in verdicts.items() if not r]
    if as_json:
        typer.echo(json.dumps({"fingerprint": fp.to_dict(), "matches": matched,
                               "mismatches": {n: r for n, r in verdicts.items() if r}}, indent=2))
        return
    console = Console()
    t = Table(title="host fingerprint", show_header=False)
    t.add_row("arch", fp.arch)
    t.add_row("cpu", f"{fp.cpu_vendor} {fp.cpu_model} ({fp.physical_cores} cores, {fp.logical_cpus} threads)")
    t.add_row("vector flags", " ".join(f for f in fp.cpu_flags if f.startswith(("avx", "amx", "fma", "f16c"))))
    t.add_row("probed", ", ".join(f"{k}={'ok' if v else ('faults' if v is False else 'not probed')}"
                                  for k, v in fp.probed.items()) or "-")
    for g in fp.gpus:
        t.add_row("gpu", f"{g.name} sm_{g.compute_capability.replace('.', '')} driver {g.driver} {g.memory_gib} GiB")
    t.add_row("gpu", "none") if not fp.gpus else None
    t.add_row("tensorrt", fp.tensorrt or "not installed")
    t.add_row("onnxruntime", fp.onnxruntime or "not installed")
    console.print(t)
    for name, reasons in verdicts.items():
        console.print(f"{'MATCH   ' if not reasons else 'no match'} {name}" + (f": {'; '.join(reasons)}" if reasons else ""))
    if not matched:
        raise typer.Exit(1)
