"""scripts/gateway-lane.sh without LiteLLM: a stub proxy stands in for it
(``GATEWAY_LANE_SERVER``), and pip is kept offline for the skip, so these run in the normal
suite. LiteLLM itself is checked by the lane. Also here: the identity rule for what a LiteLLM
gateway answers at /v1/models, checked against its answer's shape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
import yaml

from pytest_llm.backends.openai import OpenAIBackend

ROOT = Path(__file__).resolve().parents[1]
LANE = ROOT / "scripts" / "gateway-lane.sh"
HELPER = ROOT / "scripts" / "gateway_lane.py"

# A gateway as LiteLLM's proxy acts here: reads the lane's config (--config, --port), checks
# the master key, lists the model names (the cost map's figures for gpt-4o-mini, as LiteLLM
# adds them), and forwards each chat completion, streamed line by line, to the deployments of
# its model name in turn. STUB_MODE=hang never answers; STUB_MODE=die exits at once;
# STUB_DIE_AT=N exits at the chat completion numbered N (0 is the lane's warm-up).
STUB = textwrap.dedent(
    """
    import itertools, json, os, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import httpx, yaml

    args = sys.argv[1:]
    opt = dict(zip(args[::2], args[1::2]))
    with open(os.environ["STUB_LOG"], "a") as log:
        cost_map = os.environ.get("LITELLM_MODEL_COST_MAP_URL")
        log.write(json.dumps({"argv": args, "cost_map_url": cost_map}) + "\\n")
    print("stub gateway starting", flush=True)
    if os.environ.get("STUB_MODE") == "die":
        print("stub gateway: cannot start", flush=True)
        sys.exit(3)
    if os.environ.get("STUB_MODE") == "hang":
        time.sleep(600)
    config = yaml.safe_load(open(opt["--config"]))
    key = os.environ[config["general_settings"]["master_key"].split("/", 1)[1]]
    groups = {}
    for d in config["model_list"]:
        groups.setdefault(d["model_name"], []).append(d["litellm_params"])
    turns = {name: itertools.cycle(deployments) for name, deployments in groups.items()}
    chats = itertools.count()


    class Handler(BaseHTTPRequestHandler):
        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorized(self):
            if self.headers.get("Authorization") == f"Bearer {key}":
                return True
            self.reply(401, {"error": {"message": "No api key passed in.", "code": "401"}})
            return False

        def do_GET(self):
            if self.path == "/health/liveliness":
                return self.reply(200, "I'm alive!")
            if not self.authorized():
                return
            data = []
            for name, deployments in groups.items():
                row = {"id": name, "object": "model", "created": 1677610602, "owned_by": "openai"}
                if deployments[0]["model"].endswith("gpt-4o-mini"):
                    row.update(mode="chat", max_input_tokens=128000, max_output_tokens=16384)
                data.append(row)
            self.reply(200, {"data": data, "object": "list"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if not self.authorized():
                return
            if str(next(chats)) == os.environ.get("STUB_DIE_AT"):
                print("stub gateway: simulated crash", flush=True)
                os._exit(9)
            name = body["model"]
            deployment = next(turns[name])
            body["model"] = deployment["model"].split("/", 1)[1]
            url = deployment["api_base"] + "/chat/completions"
            auth = {"Authorization": f"Bearer {deployment['api_key']}"}
            with httpx.stream("POST", url, json=body, headers=auth, timeout=30) as upstream:
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", upstream.headers["content-type"])
                self.end_headers()
                for line in upstream.iter_lines():
                    if line.startswith("data: {"):
                        event = json.loads(line[6:])
                        event["model"] = name
                        line = "data: " + json.dumps(event)
                    self.wfile.write(line.encode() + b"\\n")
                    self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass


    ThreadingHTTPServer(("127.0.0.1", int(opt["--port"])), Handler).serve_forever()
    """
)


def run_lane(
    tmp_path: Path, *, env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "PYTHON": sys.executable,
        "GATEWAY_LANE_WORKDIR": str(tmp_path / "work"),
        "GATEWAY_LANE_CACHE": str(tmp_path / "cache"),
        **env,
    }
    for name in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_LLM_GATEWAY_LANE"):
        full.pop(name, None)
    return subprocess.run(
        ["bash", str(LANE)], cwd=tmp_path, env=full, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def with_stub(tmp_path: Path, **env: str) -> dict[str, str]:
    stub = tmp_path / "stub_gateway.py"
    stub.write_text(STUB)
    return {
        "GATEWAY_LANE_SERVER": f"{sys.executable} {stub}",
        "STUB_LOG": str(tmp_path / "stub.log"),
        "GATEWAY_LANE_FIRST_TOKEN_DELAY": "0.05",
        "GATEWAY_LANE_TOKEN_DELAY": "0.04",
        **env,
    }


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout.strip().splitlines()[-1]


def gone(pid: int) -> bool:
    """The process has ended (within 5 s)."""
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_the_lane_passes_through_a_gateway_that_routes_over_both_upstreams(
    tmp_path: Path,
) -> None:
    proc = run_lane(tmp_path, env=with_stub(tmp_path))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert last_line(proc).startswith("GATEWAY LANE: PASSED ("), out
    # the stub proxy was started twice, as LiteLLM is: config, loopback, a port of its own
    starts = [json.loads(line) for line in (tmp_path / "stub.log").read_text().splitlines()]
    assert len(starts) == 2
    for start in starts:
        argv = start["argv"]
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        assert Path(argv[argv.index("--config") + 1]).name == "gateway.yaml"
    assert "9 passed" in proc.stdout  # live: every test ran
    assert proc.stdout.count("7 passed, 2 deselected") == 2  # both replays, without `live`
    assert "chat requests served per upstream: http://127.0.0.1:" in proc.stdout
    assert proc.stdout.count("answers of 6 tests replayed identically") == 2
    assert "restarting the proxy" in proc.stdout and starts[1]["cost_map_url"] is None


def test_an_upstream_the_gateway_never_uses_fails_the_lane(tmp_path: Path) -> None:
    # a proxy that sends everything to the first deployment of a name (a broken routing)
    stub = STUB.replace("itertools.cycle(deployments)", "itertools.repeat(deployments[0])")
    env = with_stub(tmp_path)
    (tmp_path / "stub_gateway.py").write_text(stub)
    env["GATEWAY_LANE_SERVER"] = f"{sys.executable} {tmp_path / 'stub_gateway.py'}"
    proc = run_lane(tmp_path, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the gateway sent no request to http://127.0.0.1:" in proc.stderr
    assert "LiteLLM did not route over both upstreams" in proc.stderr
    assert last_line(proc).startswith("GATEWAY LANE: FAILED while running tests/gateway live")


def test_a_gateway_that_dies_during_the_tests_is_named_with_its_log(tmp_path: Path) -> None:
    proc = run_lane(tmp_path, env=with_stub(tmp_path, STUB_DIE_AT="1"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "BackendUnreachable" in proc.stdout  # what pytest saw
    assert "    | stub gateway: simulated crash" in proc.stderr
    assert "the LiteLLM proxy (pid " in proc.stderr
    assert "died while running tests/gateway live" in proc.stderr
    assert last_line(proc).startswith("GATEWAY LANE: FAILED while running tests/gateway live")


@pytest.mark.parametrize("mode", ["hang", "die"])
def test_a_gateway_that_never_gets_ready_fails_at_its_deadline_with_its_log(
    tmp_path: Path, mode: str
) -> None:
    env = with_stub(tmp_path, STUB_MODE=mode, GATEWAY_LANE_START_TIMEOUT="3")
    began = time.monotonic()
    proc = run_lane(tmp_path, env=env, timeout=120)
    took = time.monotonic() - began
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the last 30 lines of the proxy's log" in proc.stderr
    assert "    | stub gateway starting" in proc.stderr  # its log is shown
    if mode == "die":
        assert "exited before it was ready" in proc.stderr
    else:
        assert "was not ready within 3 s" in proc.stderr
    assert "GATEWAY_LANE_START_TIMEOUT=3" in proc.stderr
    assert last_line(proc).startswith("GATEWAY LANE: FAILED while waiting for http://127.0.0.1:")
    assert took < 60  # the deadline, not pytest's timeout, ended it
    # nothing it started is left running: the upstreams' process is gone
    state = json.loads((tmp_path / "work" / "upstreams.json").read_text())
    assert gone(state["pid"])


def test_litellm_that_cannot_be_installed_skips_the_lane_saying_why(tmp_path: Path) -> None:
    empty = tmp_path / "no-packages"
    empty.mkdir()
    venv = tmp_path / "cache" / "litellm-venv"
    env = {  # pip offline: no index, and no package where it may look
        "GATEWAY_LANE_VENV": str(venv),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(empty),
        "PIP_CONFIG_FILE": os.devnull,
    }
    proc = run_lane(tmp_path, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    skipped = [line for line in proc.stdout.splitlines() if "SKIPPED" in line]
    assert skipped == [last_line(proc)], out  # one line, the last
    assert skipped[0].startswith(
        "GATEWAY LANE: SKIPPED (litellm[proxy]==1.106.12 could not be installed: ERROR: "
    ), skipped[0]
    assert "No matching distribution found for litellm" in skipped[0], skipped[0]
    assert f"(log: {venv}.pip.log)" in skipped[0]
    assert (Path(f"{venv}.pip.log")).exists()
    assert not venv.exists()  # no half-installed venv is left to be taken for a good one
    assert "starting two FakeOllama upstreams" not in out


# --- the gateway's config and the identity rule ------------------------------------------------


def test_the_config_routes_each_name_over_both_upstreams_as_openai(tmp_path: Path) -> None:
    urls = ["http://127.0.0.1:1001", "http://127.0.0.1:1002"]
    (tmp_path / "upstreams.json").write_text(json.dumps({"urls": urls}))
    subprocess.run([sys.executable, str(HELPER), "config", str(tmp_path)], check=True)
    config = yaml.safe_load((tmp_path / "gateway.yaml").read_text())
    assert config["general_settings"] == {"master_key": "os.environ/GATEWAY_LANE_KEY"}
    by_name: dict[str, list[dict[str, object]]] = {}
    for deployment in config["model_list"]:
        by_name.setdefault(deployment["model_name"], []).append(deployment["litellm_params"])
    assert set(by_name) == {"gw-model", "gw-priced"}
    for name, upstream_model in {"gw-model": "llama3.2", "gw-priced": "gpt-4o-mini"}.items():
        assert [d["api_base"] for d in by_name[name]] == [f"{u}/v1" for u in urls]
        assert {d["model"] for d in by_name[name]} == {f"openai/{upstream_model}"}


def litellm_models(max_input_tokens: int) -> httpx.MockTransport:
    """/v1/models as LiteLLM's proxy answers it: a constant ``created``, ``owned_by`` its
    provider, and for a model its cost map knows, that map's figures."""
    row = {"id": "gw-priced", "object": "model", "created": 1677610602, "owned_by": "openai"}
    row |= {"mode": "chat", "max_input_tokens": max_input_tokens, "max_output_tokens": 16384}
    body = {"data": [row], "object": "list"}
    return httpx.MockTransport(lambda request: httpx.Response(200, json=body))


def test_a_litellm_identity_does_not_change_with_its_cost_map() -> None:
    identities = []
    for max_input_tokens in (128000, 64000):  # a newer map, fetched at the gateway's start
        backend = OpenAIBackend(
            host="http://gw:4000", timeout_seconds=5, transport=litellm_models(max_input_tokens)
        )
        identities.append(backend.digest("gw-priced"))
        backend.close()
    assert identities[0] == identities[1] == "created=1677610602 id=gw-priced owned_by=openai"
