#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with the wheels the GPU machine lacks (scripts/gpu_wheels.txt), for Python 3.12 x86-64,
# without their dependencies: that machine has no network, so the device run installs them offline:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
#     && PYTHONPATH=/tmp/site:. python3 benchmarks/gpu_check.py --output_dir $OUT
# Re-running is cheap (pip's cache) and leaves exactly one wheel per listed package: a wheel of any other name or
# version is removed, since two versions of one package stop that install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DEST=.whl
mkdir -p "$DEST"
mapfile -t PINS < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' scripts/gpu_wheels.txt | grep -v '^$')
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$DEST" "${PINS[@]}"
"$PYTHON" - "$DEST" "${PINS[@]}" <<'PY'
import re, sys
from pathlib import Path

dest, pins = Path(sys.argv[1]), sys.argv[2:]
norm = lambda name: re.sub(r"[-_.]+", "_", name).lower()
wanted = {norm(pin.split("==")[0]): pin.split("==")[1] for pin in pins}
kept, total = [], 0
for wheel in sorted(dest.glob("*")):
    name, version = (wheel.name.split("-") + ["", ""])[:2]
    if wheel.suffix == ".whl" and wanted.get(norm(name)) == version:
        kept.append(norm(name))
        total += wheel.stat().st_size
    else:
        wheel.unlink()
        print(f"removed {wheel.name} (not in scripts/gpu_wheels.txt)")
missing = sorted(set(wanted) - set(kept))
if missing or len(kept) != len(set(kept)):
    sys.exit(f"wheels missing or duplicated in {dest}/: {missing or kept}")
print(f"{dest}/: {len(kept)} wheels, {total / 2**20:.1f} MiB: {', '.join(sorted(kept))}")
PY
