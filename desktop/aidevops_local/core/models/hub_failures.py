"""How the Hub's failures reach the user: huggingface_hub's and the transport's exceptions turned into ours
(a gated repo says to accept the licence and set a token, a missing repo or file is NotFound, a dead network
is NetworkError), with the two checks made before anything is sent (offline mode, a repo name the Hub can
have). Apart from hub.py, which searches and lists; hub.py names these for its callers.
"""

from __future__ import annotations

from contextlib import contextmanager

from ..system import config
from ..system.errors import (
    AuthRequired,
    ConfigError,
    GatedRepo,
    LocalModelsError,
    ModelNotFound,
    NetworkError,
    NotFound,
)

_REPO_ID_HINT = (
    "Write it as ORG/REPO (letters, digits, '-', '_' and '.', at most 96 characters), "
    "e.g. bartowski/Qwen_Qwen3-8B-GGUF."
)


def check_online() -> None:
    if config.hf_offline():
        raise NetworkError(
            "Offline mode is on (HF_HUB_OFFLINE), so the Hugging Face Hub is not contacted.",
            hint="Unset HF_HUB_OFFLINE to search and download; `models` lists what is on disk.",
        )


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is one the Hub can have (ORG/REPO, ASCII, at most 96 characters); ConfigError, before
    anything is sent, otherwise."""
    config.hf_endpoint()  # a ConfigError for a bad HF_ENDPOINT, before huggingface_hub loads and trips on it
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        if repo_id.count("/") != 1 or not repo_id.isascii():
            raise HFValidationError(repo_id)
        validate_repo_id(repo_id)
    except HFValidationError:
        shown = repo_id if len(repo_id) <= 60 else repo_id[:57] + "..."
        raise ConfigError(f"{shown!r} is not a repository name.", hint=_REPO_ID_HINT) from None
    return repo_id


@contextmanager
def hub_errors(repo_id: str = "", filename: str = ""):
    """huggingface_hub's and the transport's exceptions, as ours."""
    import httpx2
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        raise _not_there(exc, repo_id, filename) from None
    except HFValidationError:  # a repo id that check_repo_id did not see (one from a file, say)
        check_repo_id(repo_id)
        raise ConfigError(f"{repo_id!r} is not a repository name the Hub accepts.", hint=_REPO_ID_HINT) from None
    except OfflineModeIsEnabled:
        check_online()
        raise NetworkError("Offline mode is on.", hint="Unset HF_HUB_OFFLINE.") from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", 0)
        if status in (401, 403):
            raise AuthRequired(
                f"The Hub refused access to {repo_id or 'the request'} ({status}).",
                hint="Set a valid token (HF_TOKEN) for an account that can read it.",
            ) from None
        raise NetworkError(
            f"The Hugging Face Hub answered an error ({status or 'no status'}).",
            hint="Try again in a moment.",
            details=_server_message(exc),
        ) from None
    except (httpx2.TransportError, OSError) as exc:
        if isinstance(exc, LocalModelsError):
            raise
        raise NetworkError(
            f"Cannot reach the Hugging Face Hub at {config.hf_endpoint()}: {exc}",
            hint="Check the network (and HF_ENDPOINT if you set one).",
        ) from None


def _not_there(exc: Exception, repo_id: str, filename: str) -> LocalModelsError:
    """A gated repo, or no such repo, revision or file: checked in that order (a gated repo's error is also
    a repository-not-found one)."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    page = f"{config.hf_endpoint()}/{repo_id}" if repo_id else config.hf_endpoint()
    if isinstance(exc, GatedRepoError):
        return GatedRepo(
            f"{repo_id} is a gated model: its licence must be accepted before download.",
            hint=f"Open {page}, accept the licence with your account, then set a read token "
            "for that account (HF_TOKEN, or save it in the app's settings) and try again.",
            details=_server_message(exc),
        )
    if isinstance(exc, RepositoryNotFoundError):
        status = getattr(getattr(exc, "response", None), "status_code", 0)
        hint = (
            "If it is private, set a token that can read it (HF_TOKEN)."
            if status in (401, 403)
            else "Check the name (org/repo), or find one with `aidevops-local search`."
        )
        return ModelNotFound(f"No repository {repo_id} on {config.hf_endpoint()} (or it is private).", hint=hint)
    if isinstance(exc, RevisionNotFoundError):
        return NotFound(f"{repo_id} has no such revision.", hint="Leave out --revision to use main.")
    return NotFound(
        f"{repo_id} has no file {filename!r}.",
        hint=f"List its files with `aidevops-local search --repo {repo_id}`.",
    )


def _server_message(exc: Exception) -> str:
    return str(getattr(exc, "server_message", "") or "")


@contextmanager
def parsed(what: str):
    """huggingface_hub parses the Hub's JSON into its records as it reads it: a field of the wrong kind (a date
    that is not one) ends there in a ValueError or a TypeError, said here as a malformed answer."""
    try:
        yield
    except LocalModelsError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise malformed(f"{what} cannot be read ({shown(str(exc))})") from exc


def malformed(what: str, *, hint: str = "") -> NetworkError:
    """An answer of the Hub's that is not what the Hub sends (a listing of the wrong shape, a next page
    elsewhere): like an answer that is not JSON, a network error."""
    return NetworkError(
        f"The Hugging Face Hub at {config.hf_endpoint()} sent a malformed answer: {what}.",
        hint=hint or "A proxy or a mirror (HF_ENDPOINT) may be in the way; run the command again later.",
    )


def shown(value: object) -> str:
    """A value from the network, short and on one line, for a message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
