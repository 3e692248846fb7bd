"""The GPU check (tests/gpu/check.py) runs only where a GPU is: its pure parts are checked here, on the CPU."""

from __future__ import annotations

from tests.gpu import check


def test_the_report_shows_predicted_beside_measured():
    serve = check.Row("4096", "serve", ctx=4096, parallel=1, ngl="17", predicted_vram_mib=2473.0)
    serve.measured_vram_mib, serve.predicted_tok_s, serve.tok_s = 2338.0, 905.2, [860.0, 866.0, 870.0]
    bare = check.Row("4096", "bare", measured_vram_mib=2706.0, tok_s=[852.0])
    report = check.Report(rows=[serve, bare])
    lines = check.table(report).splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    row = dict(zip(head, [c.strip() for c in lines[2].strip("|").split("|")], strict=True))
    assert (row["predicted VRAM MiB"], row["measured VRAM MiB"], row["miss MiB"]) == ("2473", "2338", "-135")
    assert (row["predicted tok/s"], row["gen tok/s (median)"]) == ("905.2", "866.0")
    assert report.as_dict()["rows"][0]["tok_s_median"] == 866.0


def test_the_speed_column_is_the_speed_model(tiny_gguf):
    assert check.predicted_speed(tiny_gguf, "cpu", 0) > 0
    assert check.predicted_speed(tiny_gguf.with_name("missing.gguf"), "cpu", 0) is None


def test_the_log_says_what_was_offloaded():
    log = "load_tensors: offloaded 9/17 layers to GPU\nCUDA0 model buffer size = 800.00 MiB\nother"
    assert check.offloaded(log) == "9/17"
    assert check.log_hints(log) == [
        "load_tensors: offloaded 9/17 layers to GPU",
        "CUDA0 model buffer size = 800.00 MiB",
    ]
