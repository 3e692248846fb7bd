"""The curated model catalog (resources/catalog.toml): what `recommend` chooses from, and the short names that
served models answer to.

Each [[model]] table is one model: its shape (written from its published config, so nothing needs downloading
to estimate its memory), its main file (a Q4_K_M), and [[model.variant]] tables for other files of the same
model (higher quants, or another publisher's). load_catalog flattens them: one CatalogModel per file, all with
the model's name, use, rank and shape, each with its own size and check mark.

`checked` says what was seen of a file when the catalog was dated: "hub" (repo, file name and size on the Hub's
own listing), "mirror" (the name in a mirror of the publisher's README), "no" (the repo exists, this exact file
was not found). `seen` is the date of that look. A file nobody saw may not exist: `recommend` prefers seen
files (recommend.UNCHECKED_PENALTY).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..system.errors import ConfigError
from .gguf_meta import SPLIT_RE
from .model_shape import ModelShape

GB = 10**9
CHECK_MARKS = ("hub", "mirror", "no")
USES = ("chat", "coding", "reasoning", "embedding")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Quality order of the quants the catalog carries: a higher quant of the same model is better, and bigger.
QUANT_QUALITY = {"Q4_0": 0, "Q4_K_S": 0, "Q4_K_M": 1, "Q5_K_S": 2, "Q5_K_M": 2, "Q6_K": 3, "Q8_0": 4, "F16": 5}


@dataclass(frozen=True)
class CatalogModel:
    name: str
    use: tuple[str, ...]
    rank: int
    repo: str
    file: str  # path in the repo; for a split set, its first part (what `pull --file` takes)
    size_bytes: int  # every part together
    shape: ModelShape
    why: str = ""
    checked: str = "no"  # "hub", "mirror" or "no": see the module's docstring
    seen: str = ""  # the date the file was looked for
    parts_bytes: tuple[int, ...] = ()  # a split set's parts, in order; () for one file
    params_b: float = 0.0  # parameters, billions (published)
    active_params_b: float = 0.0  # read per token (mixture of experts), billions; 0 when dense

    @property
    def quant(self) -> str:
        from .library import quant_from_name

        return quant_from_name(self.file)

    @property
    def quant_quality(self) -> int:
        return QUANT_QUALITY.get(self.quant, 1)

    @property
    def file_seen(self) -> bool:
        """Whether this exact file was seen (on the Hub or a mirror of the publisher's README)."""
        return self.checked != "no"

    @property
    def family(self) -> str:
        """ "Qwen3", "Gemma", "gpt-oss": the first word of the name, for picks from different families."""
        return self.name.split()[0]


def load_catalog(path: Path | None = None) -> tuple[str, list[CatalogModel]]:
    """(the list's date, one entry per file). The file ships in the package; a path overrides it (tests,
    previews). A malformed catalog is a ConfigError naming what is wrong."""
    try:
        text = (
            Path(path).read_text(encoding="utf-8")
            if path
            else resources.files("aidevops_local").joinpath("resources/catalog.toml").read_text(encoding="utf-8")
        )
        data = tomllib.loads(text)
        models = [entry for m in data.get("model", []) for entry in _entries(m)]
        return str(data.get("updated", "")), models
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"The model catalog is not valid: {exc}", hint="Fix resources/catalog.toml (see the comment at its top)."
        ) from exc


def _entries(m: dict) -> list[CatalogModel]:
    """The model's main file, then each of its variants (which may name another repo)."""
    files = [m, *({"repo": m["repo"], **v} for v in m.get("variant", []))]
    return [_entry(m, f) for f in files]


def _entry(m: dict, f: dict) -> CatalogModel:
    use = tuple(m["use"])
    if not use or set(use) - set(USES):
        raise ValueError(f"{m['name']}: use must be some of {', '.join(USES)}")
    checked, seen = f.get("checked", ""), str(f.get("seen", ""))
    if checked not in CHECK_MARKS or not DATE_RE.fullmatch(seen):
        raise ValueError(f"{f['file']}: needs checked = one of {', '.join(CHECK_MARKS)} and seen = a YYYY-MM-DD")
    size = int(float(f["size_gb"]) * GB)
    parts = tuple(int(float(p) * GB) for p in f.get("parts_gb", ()))
    _check_parts(f["file"], size, parts)
    return CatalogModel(
        name=m["name"],
        use=use,
        rank=int(m["rank"]),
        repo=f["repo"],
        file=f["file"],
        size_bytes=size,
        shape=_shape(m, size),
        why=m.get("why", ""),
        checked=checked,
        seen=seen,
        parts_bytes=parts,
        params_b=float(m.get("params_b", 0.0)),
        active_params_b=float(m.get("active_params_b", 0.0)),
    )


def _check_parts(file: str, size: int, parts: tuple[int, ...]) -> None:
    """A split set names its first part and lists every part's size; one file lists none."""
    match = SPLIT_RE.match(file.rsplit("/", 1)[-1])
    if not match and not parts:
        return
    if not match or int(match["no"]) != 1 or int(match["count"]) != len(parts):
        raise ValueError(f"{file}: a split set names its first part (-00001-of-N) and gives N sizes in parts_gb")
    if abs(sum(parts) - size) > 0.2 * GB:
        raise ValueError(f"{file}: its parts ({sum(parts) / GB:.2f} GB) do not add up to size_gb")


def _shape(m: dict, size: int) -> ModelShape:
    layers, embd, heads, kv, hd = m["layers"], m["embd"], m["heads"], m["kv_heads"], m["head_dim"]
    experts, used, expert_ff = m.get("experts", 0), m.get("experts_used", 0), m.get("expert_ff", 0)
    swa_every = m.get("swa_every", 0)
    swa_layers = sum(1 for il in range(layers) if il % swa_every < swa_every - 1) if swa_every else 0
    return ModelShape(
        architecture=m.get("arch", ""),
        n_layer=layers,
        n_embd=embd,
        n_ff=max(m["ff"], expert_ff * used),
        n_head=heads,
        n_head_kv=kv,
        head_dim_k=hd,
        head_dim_v=hd,
        n_vocab=m["vocab"],
        ctx_train=m["ctx"],
        weights_bytes=size,
        embd_bytes=int(m["vocab"] * embd * 0.75),  # ~6 bits per embedding weight
        swa_window=m.get("swa_window", 0),
        swa_layers=swa_layers,
        active_fraction=_active_fraction(m) if experts and used else 1.0,
    )


def _active_fraction(m: dict) -> float:
    """Share of the weights a mixture of experts reads per token: the published active / total parameters,
    else from the shape (attention and embeddings always, the used experts' share of the rest)."""
    if m.get("params_b") and m.get("active_params_b"):
        return float(m["active_params_b"]) / float(m["params_b"])
    layers, embd, heads, kv, hd = m["layers"], m["embd"], m["heads"], m["kv_heads"], m["head_dim"]
    expert_params = 3 * embd * m["expert_ff"] * m["experts"] * layers
    other = layers * (2 * embd * heads * hd + 2 * embd * kv * hd) + 2 * m["vocab"] * embd
    return (other + expert_params * m["experts_used"] / m["experts"]) / (other + expert_params)
