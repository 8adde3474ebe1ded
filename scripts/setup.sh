#!/usr/bin/env bash
# Set up a development/factory environment in .venv: system packages (when root), then Python packages.
# torch is pinned to the CPU build first, so nothing later can pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  need=()
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
  dpkg -s libsystemd-dev >/dev/null 2>&1 || need+=(libsystemd-dev)
  command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
  [ -x /usr/bin/chromium ] || need+=(chromium)  # the console's browser tests drive Debian's chromium
  # `appliance build image` and its VM tests: debootstrap, squashfs, FAT and ext4 images, systemd-boot, qemu + OVMF;
  # qemu-user: golden tokens for an AVX2 store built on an AVX-512 host (see CpuEmulation in appliance/sku/profiles.py).
  for pkg in debootstrap squashfs-tools dosfstools mtools e2fsprogs systemd-boot-efi qemu-utils qemu-system-x86 ovmf \
             qemu-user; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e ".[factory,test,systemd,cluster,deploy-lint]"
echo "setup: .venv ready ($(.venv/bin/python -c 'import appliance, onnxruntime; print("appliance", appliance.__version__, "onnxruntime", onnxruntime.__version__)'))"
