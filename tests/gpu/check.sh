#!/usr/bin/env bash
# The GPU check (tests/gpu/check.py) on a machine with an NVIDIA GPU, nvcc, cmake and ninja, and no internet:
#   bash tests/gpu/check.sh [check.py options]
# Installs the wheels carried in .gpu-carry/whl (the project's dependencies, for the machine's python3) into
# a private folder on PYTHONPATH, then runs the check. The llama.cpp source is .gpu-carry/src/*.tar.gz.
# Environment: PYTHON (default python3), GPU_CARRY (default .gpu-carry), OUT (results), and check.py's own
# (LLAMA_SERVER_DIR, CUDA_ARCH, GPU_CHECK_SCENARIOS, GPU_CHECK_DEADLINE_S, ...: see check.py --help).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
CARRY=${GPU_CARRY:-.gpu-carry}
SITE=${GPU_CHECK_SITE:-/tmp/gpu-check-site}
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }

if compgen -G "$CARRY/whl/*.whl" >/dev/null; then
    stamp "installing $(ls "$CARRY"/whl/*.whl | wc -l) carried wheels into $SITE"
    rm -rf "$SITE"
    if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
            --target "$SITE" "$CARRY"/whl/*.whl; then
        # No pip (or it failed): a wheel is a zip of what goes on sys.path, so unpacking them is enough here.
        stamp "pip could not install the carried wheels; unpacking them with zipfile instead"
        rm -rf "$SITE"
        "$PY" -c 'import sys, zipfile
for w in sys.argv[2:]:
    zipfile.ZipFile(w).extractall(sys.argv[1])' "$SITE" "$CARRY"/whl/*.whl || { stamp "FAILED: unpacking the wheels"; exit 1; }
    fi
    export PYTHONPATH="$SITE:$PWD/desktop${PYTHONPATH:+:$PYTHONPATH}"
else
    stamp "no wheels in $CARRY/whl: using $PY's own packages"
    export PYTHONPATH="$PWD/desktop${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c 'import sys, aidevops_local.cli.main, gguf, numpy, peewee, psutil, huggingface_hub as h
print(f"python {sys.version.split()[0]}, huggingface_hub {h.__version__}, gguf and peewee import")'; then
    stamp "FAILED: the project or gguf does not import with $PY (PYTHONPATH=$PYTHONPATH)"
    exit 1
fi
exec "$PY" -u tests/gpu/check.py "$@"
