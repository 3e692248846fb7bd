"""tests/gpu holds a script for machines with an NVIDIA GPU (check.sh -> check.py), not tests: pytest skips it."""

collect_ignore_glob = ["*.py"]
