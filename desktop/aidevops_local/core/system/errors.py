"""Typed errors: each carries a user-facing message, a hint saying what to do, and a CLI exit code.

The CLI prints ``message`` and ``hint`` and exits with ``exit_code``; the tray shows the same two strings in
a dialog. Where a standard exception means the same thing, the error also inherits it, so callers that
only know the standard library still catch it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_RUNNING = 3
    NOT_INSTALLED = 4
    NOT_FOUND = 5
    VERIFY_FAILED = 6
    NETWORK = 7
    SERVER_START = 8
    PORT_IN_USE = 9
    DISK_FULL = 10
    CONFIG = 11
    REFUSED = 12
    DATABASE = 13
    CANCELLED = 130


class LocalModelsError(Exception):
    exit_code = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str = "", details: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details  # e.g. the server's last log lines

    def __str__(self) -> str:
        return self.message


class ConfigError(LocalModelsError):
    exit_code = ExitCode.CONFIG


class RuntimeNotInstalled(LocalModelsError, FileNotFoundError):
    exit_code = ExitCode.NOT_INSTALLED


class NotFound(LocalModelsError, LookupError):
    exit_code = ExitCode.NOT_FOUND


class AssetNotFound(NotFound):
    """No release asset matches this platform and backend."""


class NeedsNewerMacOS(AssetNotFound):
    """The release's macOS build asks for a newer macOS than this Mac runs (dyld would refuse it)."""


class ModelNotFound(NotFound, FileNotFoundError):
    pass


class VerificationFailed(LocalModelsError):
    """A download's hash does not match, or an archive is unsafe to unpack."""

    exit_code = ExitCode.VERIFY_FAILED


class UnsafePath(LocalModelsError, ValueError):
    """A name from outside (archive member, Hub file name) would escape its folder."""

    exit_code = ExitCode.REFUSED


class CorruptModel(LocalModelsError, ValueError):
    exit_code = ExitCode.VERIFY_FAILED


class NetworkError(LocalModelsError, ConnectionError):
    exit_code = ExitCode.NETWORK


class DiskFull(LocalModelsError, OSError):
    exit_code = ExitCode.DISK_FULL


class ServerStartFailed(LocalModelsError):
    exit_code = ExitCode.SERVER_START


class PortInUse(ServerStartFailed):
    exit_code = ExitCode.PORT_IN_USE


class ServerNotRunning(LocalModelsError):
    exit_code = ExitCode.NOT_RUNNING


class Refused(LocalModelsError, PermissionError):
    """We will not do this (kill a process we did not start, delete a file we did not download)."""

    exit_code = ExitCode.REFUSED


class DatabaseError(LocalModelsError):
    exit_code = ExitCode.DATABASE


class Cancelled(LocalModelsError):
    exit_code = ExitCode.CANCELLED


class AuthRequired(LocalModelsError, PermissionError):
    """The Hub wants a token (private repo) or a better one."""

    exit_code = ExitCode.REFUSED


class GatedRepo(AuthRequired):
    """The repo's licence must be accepted on its model page before its files can be downloaded."""


class ChoiceNeeded(LocalModelsError):
    """More than one answer fits and none is the default: the caller asks the user, or names one."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, *, choices: list[str], hint: str = ""):
        super().__init__(message, hint=hint)
        self.choices = choices
