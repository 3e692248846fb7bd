"""The memory estimate, term by term against what llama.cpp allocates, and the launch plan built on it."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import replace

import httpx
import pytest

from aidevops_local.core.models import fit, gguf_meta
from aidevops_local.core.system import hardware
from tests.small_gguf import write_small_gguf

MIB = 1 << 20
GIB = 1 << 30


def _cpu(ram_gb: float, available_gb: float | None = None, cores: int = 8) -> hardware.Hardware:
    return hardware.from_profile(
        {
            "os": "linux",
            "arch": "x64",
            "physical_cores": cores,
            "ram_gb": ram_gb,
            "available_gb": available_gb or ram_gb,
            "cpu_features": ["avx2"],
            "backends": ["cpu"],
        }
    )


def _nvidia(vram_gb: float, ram_gb: float = 32) -> hardware.Hardware:
    return hardware.from_profile(
        {
            "os": "linux",
            "arch": "x64",
            "physical_cores": 8,
            "ram_gb": ram_gb,
            "cpu_features": ["avx2"],
            "backends": ["cuda", "cpu"],
            "gpus": [{"vendor": "nvidia", "name": "NVIDIA GeForce RTX 4090", "vram_gb": vram_gb, "backend": "cuda"}],
        }
    )


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    return gguf_meta.read_model(smollm2_gguf)


@pytest.fixture(scope="module")
def gemma3(gemma3_gguf):
    return gguf_meta.read_model(gemma3_gguf)


def test_shape_from_smollm2(smollm2):
    shape = fit.shape_from_header(smollm2)
    assert (shape.n_layer, shape.n_embd, shape.n_ff, shape.n_head, shape.n_head_kv) == (30, 576, 1536, 9, 3)
    assert (shape.head_dim_k, shape.n_vocab, shape.ctx_train, shape.n_merges) == (64, 49152, 8192, 48900)
    assert shape.swa_layers == 0 and shape.repack_bytes == 0  # Q4_1 is not repacked


def test_shape_from_gemma3_sliding_window(gemma3):
    shape = fit.shape_from_header(gemma3)
    assert shape.head_dim_k == 256  # from attention.key_length, not n_embd / n_head
    assert (shape.swa_window, shape.swa_layers, shape.n_layer) == (512, 15, 18)
    # "CPU_REPACK model buffer size = 12.66 MiB": the Q4_K layer weights.
    assert round(shape.repack_bytes / MIB, 2) == 12.66


# Numbers llama-server b10068 logged for these files with -c N and its default (automatic) 4 slots, which
# share one unified KV cache.
@pytest.mark.parametrize("ctx,kv_mib,compute_mib", [(2048, 45.0, 15.51), (4096, 90.0, 17.51), (8192, 180.0, 21.51)])
def test_smollm2_terms_match_llama_cpp(smollm2, ctx, kv_mib, compute_mib):
    est = fit.estimate_memory(smollm2, ctx=ctx, parallel=4, kv_unified=True)
    assert est.kv_ram == kv_mib * MIB
    assert est.output_ram == 0.75 * MIB
    assert est.compute_ram == pytest.approx(compute_mib * MIB, rel=0.10)


@pytest.mark.parametrize("ctx,kv_mib,compute_mib", [(2048, 36.0, 21.77), (4096, 49.5, 24.27), (8192, 61.5, 28.27)])
def test_gemma3_terms_match_llama_cpp(gemma3, ctx, kv_mib, compute_mib):
    est = fit.estimate_memory(gemma3, ctx=ctx, parallel=4, kv_unified=True)
    assert est.kv_ram == kv_mib * MIB  # the sliding-window layers keep only 512 x 4 + 512 cells
    assert est.output_ram == 4.0 * MIB
    assert est.compute_ram == pytest.approx(compute_mib * MIB, rel=0.10)
    assert est.repack_ram == est.reclaimable_ram > 0


# And with -np given (as serve does): each slot its own stream of ctx / slots cells.
@pytest.mark.parametrize("parallel,kv_mib,compute_mib", [(1, 39.0, 26.77), (2, 54.0, 22.77), (4, 84.0, 20.77)])
def test_gemma3_split_slots_match_llama_cpp(gemma3, parallel, kv_mib, compute_mib):
    est = fit.estimate_memory(gemma3, ctx=8192, parallel=parallel)
    assert est.kv_ram == kv_mib * MIB
    assert est.compute_ram == pytest.approx(compute_mib * MIB, rel=0.10)


def _llama_server_log(binary, model, port, ctx):
    """Start the real llama-server, wait for /health, return (its log, RSS) and stop it."""
    import psutil

    proc = subprocess.Popen(
        [
            str(binary),
            "-m",
            str(model),
            "-c",
            str(ctx),
            "-np",
            "4",
            "-t",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "-lv",
            "4",
            "--no-webui",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        rss = psutil.Process(proc.pid).memory_info().rss if proc.poll() is None else 0
    finally:
        proc.kill()
        out, _ = proc.communicate(timeout=30)
    return out.decode("utf-8", "replace"), rss


def _mib(log: str, what: str) -> float:
    return sum(float(x) for x in re.findall(what + r" buffer size = +([\d.]+) MiB", log))


@pytest.mark.real_server
def test_estimate_against_the_real_llama_server(llama_server_dir, tiny_gguf, free_port):
    log, rss = _llama_server_log(llama_server_dir / "llama-server", tiny_gguf, free_port(), 4096)
    assert "model loaded" in log, log[-2000:]
    est = fit.estimate_memory(gguf_meta.read_model(tiny_gguf), ctx=4096, parallel=4)
    assert est.weights_ram == pytest.approx(_mib(log, "model") * MIB, rel=0.01, abs=0.01 * MIB)
    assert est.kv_ram == pytest.approx(_mib(log, "KV") * MIB, rel=0.01)
    assert est.compute_ram == pytest.approx(_mib(log, "compute") * MIB, abs=1.5 * MIB)
    assert est.resident_at_load == pytest.approx(rss, rel=0.15)


def test_plan_takes_the_trained_context_when_it_fits(gemma3):
    plan = fit.plan_server(header=gemma3, hardware=_cpu(32), ctx=None, parallel=None, backend="cpu")
    assert plan.fits and plan.ctx_size == 32768 and plan.gpu_layers == 0
    assert plan.parallel == 4
    assert plan.predicted_ram_bytes == plan.estimate.ram_bytes
    assert any("trained context" in r for r in plan.reasons)
    assert 0 < plan.cache_ram_mib <= 8192


def test_plan_shrinks_the_context_to_fit(smollm2):
    roomy = fit.plan_server(header=smollm2, hardware=_cpu(16), ctx=None, parallel=None, backend="cpu")
    tight = fit.plan_server(
        header=smollm2, hardware=_cpu(16, available_gb=1.25), ctx=None, parallel=None, backend="cpu"
    )
    assert roomy.ctx_size == 8192
    assert tight.fits and tight.ctx_size < roomy.ctx_size
    assert tight.estimate.ram_required <= tight.estimate.budget_ram
    assert any("largest that fits" in r for r in tight.reasons)


def test_plan_that_cannot_fit_says_so(gemma3):
    plan = fit.plan_server(header=gemma3, hardware=_cpu(1, available_gb=1.1), ctx=None, parallel=None, backend="cpu")
    assert not plan.fits
    assert plan.ctx_size == 2048
    assert any("swapping" in r for r in plan.reasons)


def test_plan_respects_given_context_and_slots(smollm2):
    plan = fit.plan_server(header=smollm2, hardware=_cpu(16), ctx=3000, parallel=2, backend="cpu")
    assert (plan.ctx_size, plan.parallel) == (3000, 2)
    beyond = fit.plan_server(header=smollm2, hardware=_cpu(16), ctx=16384, parallel=1, backend="cpu")
    assert any("beyond the model's trained" in r for r in beyond.reasons)


def test_plan_offloads_everything_to_a_gpu_that_holds_it(gemma3):
    plan = fit.plan_server(header=gemma3, hardware=_nvidia(24), ctx=None, parallel=None, backend="cuda")
    assert plan.gpu_layers == 19  # 18 layers + the output layer
    est = plan.estimate
    assert est.vram_bytes > est.weights_vram > 0 and est.kv_vram == est.kv_cache
    assert est.weights_ram == fit.shape_from_header(gemma3).embd_bytes  # the embeddings stay on the CPU
    assert est.repack_ram == 0
    assert any("on the GPU" in r for r in plan.reasons)


def test_plan_offloads_part_of_a_model_too_big_for_the_gpu():
    big = fit.ModelShape(
        architecture="llama",
        n_layer=32,
        n_embd=4096,
        n_ff=14336,
        n_head=32,
        n_head_kv=8,
        head_dim_k=128,
        head_dim_v=128,
        n_vocab=128256,
        ctx_train=131072,
        weights_bytes=int(4.9e9),
        embd_bytes=int(0.4e9),
        output_bytes=int(0.4e9),
    )
    plan = fit.plan_server(header=big, hardware=_nvidia(4, ram_gb=32), ctx=None, parallel=None, backend="cuda")
    assert 0 < plan.gpu_layers < 32
    assert plan.fits
    assert plan.predicted_vram_bytes <= 4 * GIB
    assert any(f"{plan.gpu_layers} of 32 layers" in r for r in plan.reasons)


def test_no_gpu_backend_means_no_offload(gemma3):
    plan = fit.plan_server(header=gemma3, hardware=_nvidia(24), ctx=None, parallel=None, backend="cpu")
    assert plan.gpu_layers == 0 and plan.predicted_vram_bytes == 0


def test_unified_memory_counts_once(gemma3):
    mac = hardware.from_profile(
        {
            "os": "darwin",
            "arch": "arm64",
            "physical_cores": 8,
            "ram_gb": 16,
            "cpu_name": "Apple M2",
            "unified_memory": True,
            "backends": ["metal", "cpu"],
        }
    )
    plan = fit.plan_server(header=gemma3, hardware=mac, ctx=None, parallel=None, backend="metal")
    assert plan.fits and plan.gpu_layers == 19
    est = plan.estimate
    assert est.ram_required + est.vram_bytes <= est.budget_ram


def test_listing_estimate_marks_fit(smollm2):
    assert fit.estimate_memory(smollm2, hardware=_cpu(8)).fits is True
    assert fit.estimate_memory(smollm2, hardware=_cpu(2.1)).fits is False  # 2 GB reserved for the system
    assert fit.estimate_memory(smollm2).fits is None
    assert fit.estimate_memory(smollm2).ctx == 4096


def test_estimate_takes_a_path(smollm2_gguf, smollm2):
    assert fit.estimate_memory(smollm2_gguf, ctx=2048) == fit.estimate_memory(smollm2, ctx=2048)


def test_guessed_shape_scales_with_size():
    small = fit.estimate_memory(fit.guess_shape(size_bytes=int(2e9)))
    large = fit.estimate_memory(fit.guess_shape(size_bytes=int(20e9)))
    assert small.total_bytes > 2e9 and large.total_bytes > 20e9
    assert large.kv_cache > small.kv_cache


def test_tokens_per_second_follows_bandwidth(smollm2):
    """speed.py's model (tests/test_speed.py checks it against measured speeds): more bandwidth, faster."""
    shape = fit.shape_from_header(smollm2)
    slow = fit.tokens_per_second(shape, hardware=_cpu(8, cores=2), on_gpu=False)
    fast = fit.tokens_per_second(shape, hardware=_nvidia(24), on_gpu=True)
    assert 0 < slow < fast
    moe = replace(shape, active_fraction=0.1)
    assert slow < fit.tokens_per_second(moe, hardware=_nvidia(24), on_gpu=True) < 10 * fast


def test_server_path_modules_import_neither_the_hub_nor_gguf():
    """server.py imports library and fit on every start: they must stay light."""
    import subprocess
    import sys

    code = (
        "import sys; import aidevops_local.core.models.library, aidevops_local.core.models.fit, "
        "aidevops_local.core.system.hardware, aidevops_local.core.models.gguf_meta; "
        "bad = [m for m in ('huggingface_hub', 'gguf', 'numpy', 'PySide6') if m in sys.modules]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"imported {done.stdout.strip()} {done.stderr}"


# ---- header numbers of the wrong range or type ----------------------------------------------------------


BAD_HEADERS = {
    "negative context": ({"llama.context_length": ("int32", -1)}, "llama.context_length is -1"),
    "NaN layers": ({"llama.block_count": ("float32", float("nan"))}, "llama.block_count is nan"),
    "no layers": ({"llama.block_count": ("uint32", 0)}, "llama.block_count is 0"),
    "huge layers": ({"llama.block_count": ("uint64", 2**63)}, f"llama.block_count is {2**63}"),
    "huge width": ({"llama.embedding_length": ("uint64", 2**63)}, f"llama.embedding_length is {2**63}"),
    "infinite width": ({"llama.embedding_length": ("float32", float("inf"))}, "llama.embedding_length is inf"),
    "text context": ({"llama.context_length": ("string", "abc")}, "llama.context_length is 'abc'"),
    "bool context": ({"llama.context_length": ("bool", True)}, "llama.context_length is True"),
    "negative heads": ({"llama.attention.head_count": ("int32", -1)}, "llama.attention.head_count is -1"),
    "bad layer": ({"llama.attention.head_count_kv": ("array", [8, -1])}, "llama.attention.head_count_kv[1] is -1"),
    "text heads": ({"llama.attention.head_count_kv": ("array", ["a", "b"])}, "head_count_kv[0] is 'a'"),
    "too many layers": ({"llama.attention.head_count_kv": ("array", [8] * 5000)}, "an array of 5000 values"),
    "huge vocabulary": ({"llama.vocab_size": ("uint64", 2**40)}, f"llama.vocab_size is {2**40}"),
    "huge window": ({"llama.attention.sliding_window": ("uint64", 2**63)}, "llama.attention.sliding_window is"),
    "more experts used than there are": (
        {"llama.expert_count": ("uint32", 4), "llama.expert_used_count": ("uint32", 8)},
        "llama.expert_used_count is 8, more than llama.expert_count 4",
    ),
}


@pytest.mark.parametrize("case", BAD_HEADERS)
def test_header_numbers_out_of_range_or_of_the_wrong_type_are_corrupt_models(tmp_path, case):
    from aidevops_local.core.system.errors import CorruptModel, ExitCode

    values, said = BAD_HEADERS[case]
    path = write_small_gguf(tmp_path / "model.gguf", values)
    header = gguf_meta.read_header(path)  # the file itself is well formed: its numbers are what is wrong
    for build in (
        lambda: fit.shape_from_header(header),
        lambda: fit.estimate_memory(path),
        lambda: fit.plan_server(header=header, hardware=_cpu(16), ctx=None, parallel=None, backend="cpu"),
    ):
        with pytest.raises(CorruptModel) as err:
            build()
        assert err.value.message.startswith("model.gguf is not a valid GGUF file: ") and said in err.value.message
        assert err.value.exit_code == ExitCode.VERIFY_FAILED and err.value.hint and "\n" not in err.value.message


def test_sane_header_numbers_still_make_a_shape(tmp_path):
    path = write_small_gguf(
        tmp_path / "model.gguf",
        {
            "llama.block_count": ("uint32", 3),
            "llama.context_length": ("uint64", 0),  # 0: not known, as when missing
            "llama.embedding_length": ("uint32", 64),
            "llama.attention.head_count": ("uint32", 4),
            "llama.attention.head_count_kv": ("array", [2, 0, 2]),  # per layer: 0 is a recurrent layer
        },
    )
    shape = fit.shape_from_header(gguf_meta.read_header(path))
    assert (shape.n_layer, shape.ctx_train, shape.n_embd, shape.n_head_kv, shape.kv_layers) == (3, 0, 64, 2, 2)
    assert fit.plan_server(header=shape, hardware=_cpu(16), ctx=None, parallel=None, backend="cpu").fits


def test_a_file_with_bad_header_numbers_does_not_break_the_listing_of_the_others(tmp_path, tiny_gguf, capsys):
    import json
    import shutil

    from aidevops_local.cli.main import main as cli
    from aidevops_local.core.system import config

    models = config.paths().models_dir
    models.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_gguf, models / "good-Q8_0.gguf")
    for case in ("negative context", "NaN layers", "huge width", "text heads"):
        write_small_gguf(models / f"{case.replace(' ', '-')}-Q4_K_M.gguf", BAD_HEADERS[case][0])
    assert cli(["models", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert len(listed) == 5
    assert listed["good-Q8_0"]["predicted"]["ram_bytes"] > 0  # the good one keeps its figures
    assert all(m["predicted"] is None for name, m in listed.items() if name != "good-Q8_0")  # the bad: unknown


def test_serve_refuses_a_file_with_bad_header_numbers_in_one_line(tmp_path, system_runtime, capsys):
    from aidevops_local.cli.main import main as cli
    from aidevops_local.core.system.errors import ExitCode

    path = write_small_gguf(tmp_path / "nan-Q4_K_M.gguf", BAD_HEADERS["NaN layers"][0])
    assert cli(["serve", str(path), "--port", "1"]) == ExitCode.VERIFY_FAILED
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error:")
    said = " ".join(err.split())  # the console wraps at its width
    assert "error: nan-Q4_K_M.gguf is not a valid GGUF file: llama.block_count is nan." in said and "hint:" in said


def test_a_vocabulary_read_from_an_empty_embedding_tensor_is_bounded_too(tmp_path):
    """With no vocab_size and no tokens, the vocabulary is token_embd's row count: a 0 in its other dimension
    makes it 0 bytes long, so the file's size bounds nothing."""
    import gguf
    import numpy as np

    from aidevops_local.core.system.errors import CorruptModel

    path = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor_info("token_embd.weight", (2**40, 0), np.dtype(np.float32), 0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    with path.open("ab") as f:
        f.write(bytes(64))  # up to the data's alignment: the (empty) tensor data is there
    with pytest.raises(
        CorruptModel, match=r"^model\.gguf is not a valid GGUF file: token_embd\.weight has 1099511627776"
    ):
        fit.shape_from_header(gguf_meta.read_header(path))
