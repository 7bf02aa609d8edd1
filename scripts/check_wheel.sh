#!/usr/bin/env bash
# Build netmon's wheel, install it into a throwaway venv and check that the
# installed package finds its BPF sources (bpf/ shipped as netmon.bpf) the way
# the loader does. Needs no root. Usage: scripts/check_wheel.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PIP="$ROOT/.venv/bin/python -m pip"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "check_wheel: building the wheel"
$PIP wheel -q --no-deps -w "$TMP/dist" "$ROOT"
wheel=$(ls "$TMP"/dist/netmon-*.whl)
echo "check_wheel: $(basename "$wheel")"
# The listing is read whole first: `zipfile -l | grep -q` fails under pipefail
# whenever grep stops reading before zipfile has written everything.
members=$(/usr/bin/python3 -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$wheel")
for member in netmon/bpf/netmon.bpf.c netmon/bpf/netmon.h netmon/cli.py; do
    grep -qx "$member" <<<"$members" ||
        { echo "check_wheel: $member is missing from the wheel" >&2; exit 1; }
done

/usr/bin/python3 -m venv --system-site-packages "$TMP/venv"
"$TMP/venv/bin/python" -m pip install -q --no-deps "$wheel"
# Run from an empty directory so the source tree cannot be imported instead.
cd "$TMP"
"$TMP/venv/bin/python" - <<'PY'
import importlib.resources
from pathlib import Path

import netmon
from netmon.abi import bpf_dir, load_abi

site = Path(netmon.__file__).resolve().parent
bpf = importlib.resources.files("netmon.bpf")
names = sorted(p.name for p in bpf.iterdir())
assert "netmon.bpf.c" in names and "netmon.h" in names, names
assert Path(bpf_dir()).resolve() == site / "bpf", f"loader looks in {bpf_dir()}, not {site / 'bpf'}"
load_abi()
print(f"check_wheel: installed package loads its BPF sources from {bpf_dir()}")
PY
"$TMP/venv/bin/netmon" --version
echo "check_wheel: ok"
