"""A small llama GGUF written with gguf-py, its header holding exactly the keys a test gives: no general.name,
no counts, unless asked (an old converter's file, a broken or hostile one)."""

from __future__ import annotations

from pathlib import Path


def write_small_gguf(path: Path, values: dict | None = None) -> Path:
    """``values``: {key: (add_<type> of GGUFWriter, value)}, any number the format can hold."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    for key, (kind, value) in (values or {}).items():
        getattr(writer, f"add_{kind}")(key, value)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
