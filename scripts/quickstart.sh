#!/usr/bin/env bash
# Set up, build the default model store (once), and run the whole box on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f store/index.json ] || .venv/bin/appliance build models --spec appliance.toml --out store
exec .venv/bin/appliance up --store store --state-dir state --host 127.0.0.1 --port 8443 "$@"
