"""A random-weight F16 llama GGUF of a chosen size: a stand-in for weights nobody can download on the GPU machine.

The vocabulary and chat template are the tiny test model's (tests/fixtures/prepare.py); only the shape grows.
Like the tiny model, the output never reaches an end-of-generation token: dimension 0 of the residual stream
is a constant that no layer writes to, and the output head scores it high for printable tokens and low for the
rest, so every completion runs to max_tokens (what a tokens/s measurement needs).

    python tests/gpu/standin.py OUT.gguf --preset 0.75b
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests.` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fixtures.prepare import _tiny_vocab, add_llama_header


@dataclass(frozen=True)
class Shape:
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    ctx_train: int

    @property
    def params(self) -> int:
        hd = self.n_embd // self.n_head
        per_layer = 2 * self.n_embd * self.n_embd + 2 * self.n_embd * hd * self.n_head_kv + 3 * self.n_embd * self.n_ff
        return self.n_layer * per_layer


PRESETS = {
    # ~0.76B parameters, ~1.45 GiB in F16: 16 layers (-ngl 17 is "all"), 8 KV heads of 128, 64 KiB of KV a token.
    "0.75b": Shape(n_embd=2048, n_layer=16, n_head=16, n_head_kv=8, n_ff=5632, ctx_train=65536),
    # ~13M parameters: the same flow on a 2-core CPU in seconds.
    "small": Shape(n_embd=512, n_layer=4, n_head=8, n_head_kv=4, n_ff=1024, ctx_train=65536),
}


def model_shape(shape: Shape):
    """The fit estimate's ModelShape of the stand-in that write_standin writes, from its dimensions alone (what
    shape_from_header would read from the file: tests/test_fit_gpu.py checks they agree on the small preset),
    so a test can plan the 1.4 GiB model without writing it."""
    from aidevops_local.core.models.model_shape import ModelShape

    tokens, _, merges, _ = _tiny_vocab()
    e, hd = shape.n_embd, shape.n_embd // shape.n_head
    layer = 2 * (e * e * 2) + 2 * (hd * shape.n_head_kv * e * 2) + 3 * (e * shape.n_ff * 2) + 2 * e * 4
    embd = len(tokens) * e * 2
    return ModelShape(
        architecture="llama",
        n_layer=shape.n_layer,
        n_embd=e,
        n_ff=shape.n_ff,
        n_head=shape.n_head,
        n_head_kv=shape.n_head_kv,
        head_dim_k=hd,
        head_dim_v=hd,
        n_vocab=len(tokens),
        ctx_train=shape.ctx_train,
        weights_bytes=2 * embd + shape.n_layer * layer + e * 4,
        embd_bytes=embd,
        output_bytes=embd,
        n_rot=hd,
        n_merges=len(merges),
    )


def write_standin(path: Path, shape: Shape, *, seed: int = 1234) -> Path:
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens, types, merges, allowed = _tiny_vocab()
    n_vocab = len(tokens)
    e, ff = shape.n_embd, shape.n_ff
    hd = e // shape.n_head
    e_kv = hd * shape.n_head_kv

    def rnd(rows: int, cols: int, std: float) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * std).astype(np.float16)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_name(f"Stand-in Random Llama {shape.params / 1e9:.2f}B")
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    add_llama_header(
        w,
        ctx=shape.ctx_train,
        embd=e,
        n_layer=shape.n_layer,
        ff=ff,
        n_head=shape.n_head,
        n_head_kv=shape.n_head_kv,
        vocab=(tokens, types, merges),
    )

    # Scaled by fan-in so activations stay near 1 at any width; the writes back into the residual stream are
    # small, so dimension 0 (a constant 4) keeps its weight through every layer and the output head's sign.
    emb = rng.standard_normal((n_vocab, e), dtype=np.float32) * 0.5
    emb[:, 0] = 4.0
    w.add_tensor("token_embd.weight", emb.astype(np.float16))
    ones = np.ones(e, dtype=np.float32)
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones)
        w.add_tensor(p + "attn_q.weight", rnd(e, e, e**-0.5))
        w.add_tensor(p + "attn_k.weight", rnd(e_kv, e, e**-0.5))
        w.add_tensor(p + "attn_v.weight", rnd(e_kv, e, e**-0.5))
        wo = rnd(e, e, 0.1 * e**-0.5)
        wo[0, :] = 0
        w.add_tensor(p + "attn_output.weight", wo)
        w.add_tensor(p + "ffn_norm.weight", ones)
        w.add_tensor(p + "ffn_gate.weight", rnd(ff, e, e**-0.5))
        w.add_tensor(p + "ffn_up.weight", rnd(ff, e, e**-0.5))
        down = rnd(e, ff, 0.1 * ff**-0.5)
        down[0, :] = 0
        w.add_tensor(p + "ffn_down.weight", down)
    w.add_tensor("output_norm.weight", ones)
    out = rng.standard_normal((n_vocab, e), dtype=np.float32) * (0.3 * e**-0.5)
    out[:, 0] = np.where(np.array(allowed), 1.0, -1.0)
    w.add_tensor("output.weight", out.astype(np.float16))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="0.75b")
    args = ap.parse_args(argv)
    shape = PRESETS[args.preset]
    t0 = time.monotonic()
    write_standin(args.out, shape)
    size = args.out.stat().st_size
    print(
        f"wrote {args.out} ({size / 2**20:.0f} MiB, {shape.params / 1e9:.3f}B parameters, {asdict(shape)}) "
        f"in {time.monotonic() - t0:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
