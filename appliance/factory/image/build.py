"""``appliance build image``: each stage in order, with progress, ending in a summary of what was built."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from appliance import __version__
from appliance.errors import ApplianceError
from appliance.factory.image import disk, esp, filesystems, rootfs, venv
from appliance.factory.image.commands import require_tools
from appliance.factory.image.recipe import Recipe, git_commit, source_date_epoch
from appliance.factory.image.report import Artifact, BuildReport, Package, Partition
from appliance.spec import ApplianceSpec
from appliance.store.signing import signing_key_for_build
from appliance.store.verify import verify_store
from appliance.update import slots

RAW, QCOW2, REPORT = "appliance.raw", "appliance.qcow2", "report.json"


def default_version() -> str:
    return f"{__version__}+{git_commit()}"


def default_cache() -> Path:
    return Path.home() / ".cache" / "appliance" / "image"


def build_image(spec: ApplianceSpec, out: Path, store: Path | None, signing_key: Path | None, *,
                diagnostics_key: Path | None = None, cache: Path | None = None, test_access: bool = False,
                version: str | None = None, slot_bytes: int = 0, console: Console | None = None) -> BuildReport:
    console = console or Console(stderr=True)
    require_tools()
    recipe = Recipe.load()
    cache = cache or default_cache()
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="image-", dir=cache.parent if cache.parent.is_dir() else None))
    root, var = work / "root", work / "var"
    epoch = source_date_epoch()
    version = version or default_version()
    uuids = {label: recipe.partition_uuid(spec.box.name, label) for label in ("root-a", "root-b", "data")}
    key, dev = signing_key_for_build(signing_key)
    if dev:
        console.print("[bold yellow]WARNING: no --signing-key given; the image trusts the DEVELOPMENT key. "
                      "A box built for customers must be built with the vendor key.[/]")
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if diagnostics_key is None:
        console.print("[yellow]no --diagnostics-key: the box cannot encrypt diagnostics bundles for the vendor until "
                      "one is installed (or given to `appliance diagnostics collect --vendor-key`).[/]")
    elif not diagnostics_key.is_file():
        raise ApplianceError(f"{diagnostics_key}: vendor diagnostics public key not found; make the pair with "
                             "`appliance diagnostics keygen --out PREFIX` and pass PREFIX.pub")
    stages: dict[str, float] = {}
    hits: dict[str, bool] = {}
    t0 = time.monotonic()
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
            @contextmanager
            def stage(name: str, what: str):
                task = bar.add_task(what, total=1)
                s = time.monotonic()
                yield
                stages[name] = round(time.monotonic() - s, 1)
                bar.update(task, completed=1, description=f"{what}: done")

            with stage("store", "model store for the spec"):
                store = _store(spec, store, signing_key, work, pub, console)
                store_digest = hashlib.sha256((store / "index.json").read_bytes()).hexdigest()
                store_bytes = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
            with stage("base", f"Debian {len(recipe.packages)} packages (debootstrap, cached)"):
                hits["debootstrap"] = rootfs.base_root(recipe, cache, root)
            with stage("wheels", "runtime wheelhouse (cached)"):
                wheels, hits["wheelhouse"] = venv.wheelhouse(cache)
            with stage("venv", "/opt/appliance/venv"):
                python_packages = venv.install(root, wheels, work)
            with stage("configure", "units, user, network, journal, kernel"):
                rootfs.configure(recipe, root, test_access=test_access)
                kernels = rootfs.trim_kernel(root)
                shutil.copytree(store, root / "opt/appliance/store", symlinks=False)
                (root / "etc/appliance").mkdir(parents=True, exist_ok=True)
                (root / "etc/appliance/vendor.pub").write_bytes(pub)
                if diagnostics_key is not None:
                    shutil.copyfile(diagnostics_key, root / "etc/appliance/vendor-diagnostics.pub")
                rootfs.write_release(root, {"version": version, "box_name": spec.box.name, "sku": spec.box.sku,
                                            "store_digest": store_digest, "test_access": test_access,
                                            "diagnostics_key": diagnostics_key is not None})
                debian_packages = rootfs.packages(root)
                rootfs.split_var(root, var)
            with stage("squashfs", "root filesystem (squashfs, xz)"):
                root_img = filesystems.squashfs(root, work / "root.squashfs", epoch)
                root_bytes = root_img.stat().st_size
            with stage("esp", "EFI system partition (systemd-boot)"):
                booted = esp.layout(root, work / "esp", version, uuids["root-a"])
                esp_img = esp.image(work / "esp", work / "esp.vfat", epoch)
            with stage("data", "data partition (ext4, /var)"):
                data_img = filesystems.data(var, work / "data.ext4", uuids["data"], epoch)
            with stage("disk", "GPT disk (systemd-repart), qcow2, SHA256SUMS"):
                defs = disk.definitions(recipe.dir, work / "repart.d", {
                    "ESP_IMAGE": str(esp_img), "ROOT_IMAGE": str(root_img), "DATA_IMAGE": str(data_img),
                    "ROOT_SLOT_BYTES": str(disk.slot_bytes(root_img, slot_bytes)),
                    "ROOT_A_UUID": uuids["root-a"], "ROOT_B_UUID": uuids["root-b"], "DATA_UUID": uuids["data"]})
                partitions = disk.assemble(defs, out / RAW, recipe.partition_uuid(spec.box.name, "disk"))
                disk.qcow2(out / RAW, out / QCOW2)
                shutil.copyfile(booted["kernel"], out / "vmlinuz")
                shutil.copyfile(booted["initrd"], out / "initrd.img")
                sums = disk.write_sums(out, [RAW, QCOW2, "vmlinuz", "initrd.img"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = BuildReport(
        box_name=spec.box.name, sku=spec.box.sku, version=version, git_commit=git_commit(), source_date_epoch=epoch,
        recipe_digest=recipe.digest, test_access=test_access, kernel=booted["kernel_version"],
        kernel_cmdline=slots.kernel_cmdline(uuids["root-a"], "a"), store_digest=store_digest,
        store_bytes=store_bytes,
        root_squashfs_bytes=root_bytes,
        partitions=[Partition(**p) for p in partitions],
        artifacts=[Artifact(name=n, size=(out / n).stat().st_size, sha256=d) for n, d in sums.items()],
        debian_packages=[Package(**p) for p in debian_packages],
        python_packages=[Package(**p) for p in python_packages],
        stages_seconds=stages, cache_hits=hits, seconds=round(time.monotonic() - t0, 1))
    (out / REPORT).write_text(report.model_dump_json(indent=2) + "\n")
    console.print(summary(report, out))
    return report


def _store(spec: ApplianceSpec, store: Path | None, signing_key: Path | None, work: Path, pub: bytes,
           console: Console) -> Path:
    """The given store, verified against the key the image will trust; or one built now from the spec."""
    if store is None:
        from appliance.factory.pipeline import build_models

        store = work / "store"
        build_models(spec, store, signing_key, console=console)
    trusted = work / "vendor.pub"
    trusted.write_bytes(pub)
    verified = verify_store(store, trusted_key=trusted, host=None, check_hashes=True)
    if verified.index.sku != spec.box.sku:
        raise ApplianceError(f"{store}: built for SKU {verified.index.sku}, the spec says {spec.box.sku}; "
                             "build the store from this spec (drop --store to build it now)")
    missing = {m.id for m in spec.models} - set(verified.models)
    if missing:
        raise ApplianceError(f"{store}: lacks model(s) {', '.join(sorted(missing))} of the spec; rebuild it from "
                             "this spec (drop --store to build it now)")
    return store


def summary(report: BuildReport, out: Path) -> Table:
    mib = 2**20
    table = Table(title=f"Image {report.version} for {report.sku} in {out} ({report.seconds:.0f} s)")
    for col in ("partition", "type", "size", "contents"):
        table.add_column(col)
    contents = {"esp": f"systemd-boot, kernel {report.kernel}, initrd, entry for slot A",
                "root-a": f"squashfs {report.root_squashfs_bytes / mib:.0f} MiB: Debian "
                          f"({len(report.debian_packages)} packages), venv ({len(report.python_packages)}), store",
                "root-b": "empty, for updates", "data": "ext4 on /var: state and journal"}
    for p in report.partitions:
        table.add_row(p.label, p.type, f"{p.size / mib:.0f} MiB", contents.get(p.label, ""))
    for a in report.artifacts:
        table.add_row(a.name, "", f"{a.size / mib:.0f} MiB", f"sha256 {a.sha256[:16]}...")
    table.caption = (f"store {report.store_digest[:16]}... ({report.store_bytes / mib:.0f} MiB); stages: "
                     + ", ".join(f"{k} {v:.0f} s" for k, v in report.stages_seconds.items())
                     + ("; TEST ACCESS: root shell on the serial console" if report.test_access else ""))
    return table
