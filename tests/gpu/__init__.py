"""The GPU check: a script for machines with an NVIDIA GPU (see README.md here), not tests."""
