"""The tray application (PySide6). The only package that imports Qt; everything it does is a core call run
off the GUI thread."""

import sys

# httpx imports its command-line client (rich, click, pygments: ~5 MB resident) whenever those happen to be
# installed; the tray never uses it. A None entry makes that optional import fail the way httpx expects.
sys.modules.setdefault("httpx._main", None)
