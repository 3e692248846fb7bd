"""aidevops Local Models: llama.cpp and Hugging Face as a $0 local tier beside cloud models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aidevops-local")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
