"""scripts/real-model.sh without the real model: a stub server stands in for llama.cpp's
(``REAL_MODEL_SERVER``), so these run in the normal suite in seconds. The lane's build of
llama-cpp-python itself is checked by the lane; here its checks (scripts/real_model_build.py)
run on small synthetic libraries and wheels.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LANE = ROOT / "scripts" / "real-model.sh"
BUILD = ROOT / "scripts" / "real_model_build.py"

# Answers /v1/models and non-streamed chat completions like llama-cpp-python's server, and
# dies with SIGSEGV (after a line like llama.cpp's) at the chat completion numbered $STUB_DIE_AT
# (0 is the first), or at once when it is "start".
STUB = textwrap.dedent(
    """
    import json, os, resource, signal, sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    args = sys.argv[1:]
    opt = dict(zip(args[::2], args[1::2]))
    with open(os.environ["STUB_LOG"], "a") as log:
        log.write(json.dumps({"argv": args}) + "\\n")
    die_at = os.environ.get("STUB_DIE_AT", "never")
    calls = 0


    def die(where):
        print(f"{where}: simulated crash\\nSegmentation fault (core dumped)", file=sys.stderr)
        sys.stderr.flush()
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.pthread_kill(threading.get_ident(), signal.SIGSEGV)
        time.sleep(60)  # never answer: the signal may take a moment to end the process


    class Handler(BaseHTTPRequestHandler):
        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorized(self):
            if self.headers.get("Authorization") == f"Bearer {opt['--api_key']}":
                return True
            self.reply(401, {"error": {"message": "Invalid API key", "code": 401}})
            return False

        def do_GET(self):
            if self.authorized():
                self.reply(200, {"object": "list", "data": [{"id": opt["--model_alias"]}]})

        def do_POST(self):
            global calls
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with open(os.environ["STUB_LOG"], "a") as log:
                log.write(json.dumps({"request": body}) + "\\n")
            if not self.authorized():
                return
            if str(calls) == die_at:
                die("ggml_backend_amx_mul_mat")
            calls += 1
            self.reply(200, {
                "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "length",
                             "message": {"role": "assistant", "content": "Hi"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            })

        def log_message(self, *args):
            pass


    if die_at == "start":
        die("llama_model_load")
    ThreadingHTTPServer(("127.0.0.1", int(opt["--port"])), Handler).serve_forever()
    """
)


def repository_copy(tmp_path: Path) -> Path:
    """The lane script in a repository of its own whose examples/ is one small test, so that
    a re-record (``--record-examples``) can never write into this checkout's examples/."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(LANE, repo / "scripts")
    (repo / "examples").mkdir()
    (repo / "examples" / "pytest.ini").write_text(
        "[pytest]\nllm_backend = openai\nllm_model = smollm2:135m\n"
    )
    (repo / "examples" / "test_example.py").write_text(
        "def test_example(llm):\n    assert llm.chat('Hi').content\n"
    )
    return repo / "scripts" / LANE.name


def lane(
    tmp_path: Path, *args: str, die_at: str, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    """Run the lane with the stub as its server; its output and what the stub saw."""
    script = repository_copy(tmp_path) if "--record-examples" in args else LANE
    stub = tmp_path / "stub_server.py"
    stub.write_text(STUB)
    log = tmp_path / "stub.log"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "REAL_MODEL_SERVER": f"{sys.executable} {stub}",
        "REAL_MODEL_WORKDIR": str(tmp_path / "work"),
        "REAL_MODEL_CACHE": str(tmp_path / "cache"),
        "REAL_MODEL_START_TIMEOUT": "30",
        "REAL_MODEL_SMOKE_TIMEOUT": "30",
        "STUB_LOG": str(log),
        "STUB_DIE_AT": die_at,
    }
    for name in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_LLM_REAL_MODEL"):
        env.pop(name, None)
    proc = subprocess.run(
        ["bash", str(script), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    seen = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, seen


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("args", [(), ("--record-examples",)], ids=["lane", "record-examples"])
def test_a_build_that_dies_on_its_first_inference_fails_the_lane_before_any_test(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    proc, seen = lane(tmp_path, *args, die_at="0")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    # one request, the one-token inference, and the server was started as the lane starts it
    argv = seen[0]["argv"]
    assert isinstance(argv, list) and "--interrupt_requests" in argv
    assert argv[argv.index("--interrupt_requests") + 1] == "False"
    requests = [entry["request"] for entry in seen if "request" in entry]
    assert len(requests) == 1 and requests[0]["max_tokens"] == 1, requests  # type: ignore[index]
    assert "the llama.cpp server (pid " in proc.stderr
    assert "died (signal SEGV, exit 139)" in proc.stderr, proc.stderr
    assert "| ggml_backend_amx_mul_mat: simulated crash" in proc.stderr  # the log's tail
    assert "THE BUILD OF llama-cpp-python IS BROKEN on this machine" in proc.stderr
    assert f"rm -rf '{tmp_path / 'cache'}/llama-cpp-python-0.3.36-" in proc.stderr
    assert "running tests/real" not in out and "re-recording" not in out
    assert "BackendUnreachable" not in out
    assert last_line(proc).startswith("REAL-MODEL LANE: FAILED while running a one-token inference")
    assert last_line(proc).endswith("died (signal SEGV, exit 139)")


def test_a_server_that_dies_while_starting_is_named_with_its_log(tmp_path: Path) -> None:
    proc, _ = lane(tmp_path, die_at="start")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "died (signal SEGV, exit 139)" in proc.stderr
    assert "| llama_model_load: simulated crash" in proc.stderr
    assert "the llama.cpp server died before it answered" in proc.stderr
    assert last_line(proc).startswith("REAL-MODEL LANE: FAILED while waiting for")


def test_a_server_that_dies_during_the_tests_is_named_after_pytest_fails(tmp_path: Path) -> None:
    """The one-token inference passes, then the first test's call kills the server: pytest's
    failures are followed by who died and how, not left as BackendUnreachable alone."""
    proc, seen = lane(tmp_path, die_at="1", timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "one token: 'Hi'" in proc.stdout
    assert "BackendUnreachable" in proc.stdout  # what pytest saw
    assert "ERROR: the llama.cpp server (pid " in proc.stderr
    assert "died (signal SEGV, exit 139)" in proc.stderr
    assert "| ggml_backend_amx_mul_mat: simulated crash" in proc.stderr
    assert "died while running tests/real live" in proc.stderr
    assert "replaying" not in proc.stdout
    assert last_line(proc).startswith("REAL-MODEL LANE: FAILED while running tests/real live")
    assert len([entry for entry in seen if "request" in entry]) == 2


def test_a_server_that_dies_while_the_examples_are_re_recorded_is_named(tmp_path: Path) -> None:
    proc, _ = lane(tmp_path, "--record-examples", die_at="1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "BackendUnreachable" in proc.stdout
    assert "died (signal SEGV, exit 139)" in proc.stderr
    assert "died while re-recording the examples live" in proc.stderr
    assert "examples/ may now hold partial recordings" in proc.stderr
    assert "replaying the examples" not in proc.stdout
    assert last_line(proc).startswith("REAL-MODEL LANE: FAILED while re-recording the examples")


def test_an_unknown_argument_is_a_usage_error(tmp_path: Path) -> None:
    proc, seen = lane(tmp_path, "--record-exampels", die_at="never")
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "[--record-examples]" in proc.stderr
    assert seen == []  # no server was started


# --- scripts/real_model_build.py ------------------------------------------------------------


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def make_wheel(path: Path, libs: dict[str, bytes]) -> Path:
    files = {**libs, "llama_cpp/__init__.py": b""}
    record = "".join(f"{name},{record_hash(data)},{len(data)}\n" for name, data in files.items())
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr(
            "llama_cpp_python-0.3.36.dist-info/RECORD", record + "x.dist-info/RECORD,,\n"
        )
    return path


def install(site: Path, libs: dict[str, bytes]) -> None:
    """What pip leaves in site-packages for llama_cpp_python 0.3.36 (metadata and files)."""
    info = site / "llama_cpp_python-0.3.36.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.3.36\n"
    )
    for name, data in libs.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)
    (info / "RECORD").write_text(
        "".join(f"{n},{record_hash(d)},{len(d)}\n" for n, d in libs.items())
    )


def run_build(*args: str, site: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, str(BUILD), *args], env=env, capture_output=True, text=True, timeout=60
    )


PORTABLE = {
    "llama_cpp/lib/libggml-cpu.so": b"portable build",
    "lib/libggml-cpu.so": b"portable build",
}


def test_a_venv_whose_llama_cpp_is_another_build_is_told_apart(tmp_path: Path) -> None:
    """A native build of the same version (pip keeps it: same version) is not the wheel's."""
    wheel = make_wheel(tmp_path / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl", PORTABLE)
    install(tmp_path / "same", PORTABLE)
    same = run_build("installed-from", str(wheel), site=tmp_path / "same")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "is installed from llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl" in same.stdout

    install(tmp_path / "native", {**PORTABLE, "llama_cpp/lib/libggml-cpu.so": b"native build"})
    native = run_build("installed-from", str(wheel), site=tmp_path / "native")
    assert native.returncode == 1
    assert "libggml-cpu.so differs from" in native.stdout and "another build" in native.stdout

    missing = run_build("installed-from", str(wheel), site=tmp_path / "nothing")
    assert missing.returncode == 1 and "llama_cpp_python is not installed" in missing.stdout


needs_binutils = pytest.mark.skipif(
    not (shutil.which("as") and shutil.which("objdump")), reason="needs binutils (as, objdump)"
)


@needs_binutils
@pytest.mark.parametrize(
    ("instruction", "portable"),
    [
        ("vpaddd %ymm1, %ymm2, %ymm3", True),  # AVX2: what the portable build may use
        ("vpaddd %zmm1, %zmm2, %zmm3", False),  # AVX-512
        ("vpaddd %ymm17, %ymm2, %ymm3", False),  # AVX-512VL (EVEX-only register)
        ("tilerelease", False),  # AMX
    ],
)
def test_the_build_check_rejects_avx512_and_amx_code(
    tmp_path: Path, instruction: str, portable: bool
) -> None:
    def assemble(name: str, code: str) -> bytes:
        source = tmp_path / f"{name}.s"
        source.write_text(f".text\n.globl {name}\n{name}:\n    {code}\n    ret\n")
        subprocess.run(["as", "-o", str(tmp_path / name), str(source)], check=True, timeout=60)
        return (tmp_path / name).read_bytes()

    wheel = make_wheel(tmp_path / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl", {
        "llama_cpp/lib/libggml-base.so": assemble("base", "nop"),
        "llama_cpp/lib/libggml-cpu.so.0.25.3": assemble("kernel", instruction),
    })  # fmt: skip
    proc = run_build("portable", str(wheel))
    if portable:
        assert proc.returncode == 0, proc.stderr
        assert "no AVX-512 or AMX instruction in the 2 libraries" in proc.stdout
    else:
        assert proc.returncode == 1
        assert "llama_cpp/lib/libggml-cpu.so.0.25.3" in proc.stderr
        assert "holds AVX-512/AMX code" in proc.stderr and instruction.split()[0] in proc.stderr
