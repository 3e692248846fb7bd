"""Name the releases page in pyproject.toml's [project.urls] (as `Releases`) before a release build, so the
built app's metadata carries it and `aidevops-local doctor` shows where newer versions are published. The
release workflow passes its own repository's page; a `Releases` URL already in pyproject.toml is kept.

    python packaging/stamp_releases_url.py https://github.com/OWNER/REPO/releases [--pyproject PATH]
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def stamp(url: str, pyproject: Path = PYPROJECT) -> bool:
    """Add ``Releases = "<url>"``; False when a Releases URL is there already. Raises ValueError for a URL that
    is not a plain https address (it is written into TOML and shown to users)."""
    if not re.fullmatch(r'https://[^\s"\\]+', url):
        raise ValueError(f"not a plain https address: {url!r}")
    text = pyproject.read_text(encoding="utf-8")
    urls = tomllib.loads(text)["project"].get("urls", {})
    if any(label.lower() == "releases" for label in urls):
        return False
    entry = f'Releases = "{url}"\n'
    if urls or re.search(r"^\[project\.urls\]\s*$", text, re.MULTILINE):
        stamped, found = re.subn(
            r"^\[project\.urls\]\s*\n", lambda m: m.group(0) + entry, text, count=1, flags=re.MULTILINE
        )
        if not found:
            raise ValueError(f"{pyproject}: [project] has urls, but not as a [project.urls] table")
    else:
        stamped = text.rstrip("\n") + "\n\n[project.urls]\n" + entry
    if tomllib.loads(stamped)["project"]["urls"].get("Releases") != url:
        raise ValueError(f"{pyproject}: the stamped file does not read back")
    pyproject.write_text(stamped, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the releases page, https://github.com/OWNER/REPO/releases")
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    args = parser.parse_args(argv)
    try:
        added = stamp(args.url, args.pyproject)
    except ValueError as exc:
        print(f"stamp_releases_url: {exc}", file=sys.stderr)
        return 2
    print(f"stamp_releases_url: {'Releases = ' + args.url if added else 'a Releases URL is there already; kept'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
