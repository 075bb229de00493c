#!/usr/bin/env bash
# The gateway lane: tests/gateway/ through a LiteLLM proxy that routes one model name over two
# FakeOllama servers, with pytest-llm's OpenAI backend pointed at the proxy.
#
#   1. a venv of its own with litellm[proxy] (pinned), cached by version in
#      $GATEWAY_LANE_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/pytest-llm), so LiteLLM's many
#      dependencies never enter the project's venv. When it cannot be installed (no network,
#      a failed build, no venv module) the lane prints one line, GATEWAY LANE: SKIPPED (why),
#      and exits 0;
#   2. two FakeOllama upstreams (scripts/gateway_lane.py upstreams: a first-token delay, a
#      token delay, their own token counts logged per request) and the proxy on 127.0.0.1, a
#      free port, a random master key; wait (bounded) until it lists the models;
#   3. tests/gateway/ live, recording cassettes (--llm-record-mode=once); both upstreams must
#      have served requests;
#   4. the proxy restarted with a newer model cost map (its /v1/models answer changes), and
#      tests/gateway/ replayed with it up (--llm-record-mode=none): the identity check must
#      still pass;
#   5. proxy and upstreams stopped, tests/gateway/ replayed again, and the answers of the live
#      run and both replays compared: they must be identical;
#   6. one line: GATEWAY LANE: PASSED, FAILED while <step>, or SKIPPED (why). Every process it
#      started is stopped however this ends; a wait is never longer than its deadline.
#
# The tests run with the Python that calls this script ($PYTHON, default `python`), which must
# have pytest-llm installed (.ci/run's .venv). Work files go to $GATEWAY_LANE_WORKDIR (default: a
# new temporary directory, removed when the lane passes or skips).
# $GATEWAY_LANE_SERVER, for the lane's own tests only, replaces `VENV/bin/litellm` by another
# command (given the same arguments) and skips step 1; $GATEWAY_LANE_FIRST_TOKEN_DELAY and
# $GATEWAY_LANE_TOKEN_DELAY (seconds, default 0.4 and 0.25) pace the upstreams' answers.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
# pinned: the venv is cached by version, and the lane should not change under our feet
LITELLM_VERSION="1.106.12"
LITELLM_SPEC="litellm[proxy]==${LITELLM_VERSION}"
# litellm[proxy] 1.106.12 imports prisma (of its extra-proxy) when it refuses a request without
# a key, and answers 500 instead of 401 without it: prisma is installed with it
PRISMA_SPEC="prisma==0.15.0"
INSTALLED="${LITELLM_SPEC} ${PRISMA_SPEC}"
INSTALL_TIMEOUT=${GATEWAY_LANE_INSTALL_TIMEOUT:-600}  # seconds for pip (about 40 s measured)
START_TIMEOUT=${GATEWAY_LANE_START_TIMEOUT:-90}       # seconds for the proxy to be ready
PYTEST_TIMEOUT=${GATEWAY_LANE_PYTEST_TIMEOUT:-300}    # seconds for one pytest run
CACHE=${GATEWAY_LANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pytest-llm}

WORK=${GATEWAY_LANE_WORKDIR:-$(mktemp -d -t pytest-llm-gateway.XXXXXX)}
mkdir -p "$WORK"
UPSTREAMS_PID=""
GATEWAY_PID=""
GATEWAY_LOG=""
SKIPPED=""
STEP="starting"
STARTED=$SECONDS

stop_pid() {  # stop_pid PID: TERM, up to 10 s, then KILL; reaped
    local pid=$1
    [[ -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_gateway() {
    stop_pid "$GATEWAY_PID"
    GATEWAY_PID=""
}

finish() {
    local status=$?
    stop_gateway
    stop_pid "$UPSTREAMS_PID"
    UPSTREAMS_PID=""
    local took=$((SECONDS - STARTED))
    if [[ -n "$SKIPPED" ]]; then
        [[ -z "${GATEWAY_LANE_WORKDIR:-}" ]] && rm -rf "$WORK"
        echo "GATEWAY LANE: SKIPPED (${SKIPPED})"
        exit 0
    fi
    if [[ $status -eq 0 ]]; then
        [[ -z "${GATEWAY_LANE_WORKDIR:-}" ]] && rm -rf "$WORK"
        echo "GATEWAY LANE: PASSED (${took} s)"
    else
        echo "GATEWAY LANE: FAILED while ${STEP} (exit ${status}, ${took} s; logs in ${WORK})"
    fi
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

step() {
    STEP=$1
    echo "== gateway lane: $1"
}

fail() {
    echo "ERROR: $*" >&2
    exit 1
}

# skip REASON: the router cannot be installed here; the one line says why
skip() {
    SKIPPED=$1
    exit 0
}

# the last line of a pip log that says what went wrong
pip_reason() {
    local line
    line=$(grep -v "^WARNING: Location" "$1" | grep -E "^ERROR:|Error|error:" | tail -n 1 || true)
    [[ -n "$line" ]] || line=$(grep -v "^WARNING: Location" "$1" | tail -n 1 || true)
    printf '%s' "${line:0:300}"
}

"$PYTHON" -c "import pytest_llm" 2>/dev/null ||
    fail "pytest-llm is not importable with ${PYTHON}: run \`pip install -e '.[dev]'\` first"

# --- 1. the proxy's venv -----------------------------------------------------------------------
if [[ -n "${GATEWAY_LANE_SERVER:-}" ]]; then
    read -ra GATEWAY_CMD <<<"$GATEWAY_LANE_SERVER"
    COSTMAP_SRC=""
    echo "== gateway lane: GATEWAY_LANE_SERVER is set: serving with \`${GATEWAY_LANE_SERVER}\`"
else
    PY_TAG=$("$PYTHON" -c 'import sys; print("py%d.%d" % sys.version_info[:2])')
    VENV=${GATEWAY_LANE_VENV:-${CACHE}/litellm-${LITELLM_VERSION}-${PY_TAG}}
    READY="${VENV}/.pytest-llm-installed"
    GATEWAY_CMD=("$VENV/bin/litellm")
    mkdir -p "$(dirname "$VENV")"
    exec 9>"${VENV}.lock"
    flock -w "$INSTALL_TIMEOUT" 9 || skip "another lane held ${VENV}.lock for ${INSTALL_TIMEOUT} s"
    if [[ ! -f "$READY" || "$(cat "$READY")" != "$INSTALLED" || ! -x "$VENV/bin/litellm" ]]; then
        step "installing ${INSTALLED} into ${VENV} (about a minute, once)"
        rm -rf "$VENV"
        if ! "$PYTHON" -m venv "$VENV" >"$WORK/venv.log" 2>&1; then
            rm -rf "$VENV"
            skip "no venv for LiteLLM: ${PYTHON} -m venv failed: $(pip_reason "$WORK/venv.log")"
        fi
        began=$SECONDS
        status=0
        timeout "$INSTALL_TIMEOUT" "$VENV/bin/python" -m pip install --quiet \
            --disable-pip-version-check "$LITELLM_SPEC" "$PRISMA_SPEC" >"$WORK/pip.log" 2>&1 ||
            status=$?
        if ((status != 0)); then
            reason=$(pip_reason "$WORK/pip.log")
            ((status == 124)) && reason="pip did not finish in ${INSTALL_TIMEOUT} s"
            cp "$WORK/pip.log" "${VENV}.pip.log" 2>/dev/null || true
            rm -rf "$VENV"
            skip "${LITELLM_SPEC} could not be installed: ${reason} (log: ${VENV}.pip.log)"
        fi
        printf '%s' "$INSTALLED" >"$READY"
        echo "installed ${INSTALLED} in $((SECONDS - began)) s"
    fi
    exec 9>&-
    # found, not imported: importing litellm fetches its cost map from the network
    COSTMAP_SRC=$("$VENV/bin/python" -c "
import importlib.util, pathlib
spec = importlib.util.find_spec('litellm')
print(pathlib.Path(spec.submodule_search_locations[0], 'model_prices_and_context_window_backup.json'))
")
    [[ -f "$COSTMAP_SRC" ]] || fail "LiteLLM's bundled cost map is missing: ${COSTMAP_SRC}"
    echo "LiteLLM ${LITELLM_VERSION}: ${VENV}"
fi

# --- 2. upstreams and the proxy ----------------------------------------------------------------
step "starting two FakeOllama upstreams"
"$PYTHON" scripts/gateway_lane.py upstreams "$WORK" \
    --first-token-delay "${GATEWAY_LANE_FIRST_TOKEN_DELAY:-0.4}" \
    --token-delay "${GATEWAY_LANE_TOKEN_DELAY:-0.25}" >"$WORK/upstreams.log" 2>&1 &
UPSTREAMS_PID=$!
for _ in $(seq 1 300); do  # up to 30 s
    [[ -f "$WORK/upstreams.json" ]] && break
    kill -0 "$UPSTREAMS_PID" 2>/dev/null || break
    sleep 0.1
done
if [[ ! -f "$WORK/upstreams.json" ]]; then
    tail -n 30 "$WORK/upstreams.log" | sed 's/^/    | /' >&2
    fail "the FakeOllama upstreams did not start (log above, ${WORK}/upstreams.log)"
fi
cat "$WORK/upstreams.log"
"$PYTHON" scripts/gateway_lane.py config "$WORK"

GATEWAY_LANE_KEY="sk-$("$PYTHON" -c "import secrets; print(secrets.token_hex(24))")"
export GATEWAY_LANE_KEY  # the proxy's master key: the tests are told its name, never its value

# start_gateway LOG [VAR=VALUE ...]: the proxy on a new free port, with that environment
start_gateway() {
    local log=$1
    shift
    PORT=$("$PYTHON" -c "
import socket
with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    print(s.getsockname()[1])
")
    GATEWAY_URL="http://127.0.0.1:${PORT}"
    GATEWAY_LOG=$log
    (cd "$WORK" && exec env "$@" "${GATEWAY_CMD[@]}" --config "$WORK/gateway.yaml" \
        --host 127.0.0.1 --port "$PORT" --num_workers 1) >"$log" 2>&1 &
    GATEWAY_PID=$!
}

# wait_gateway LOG OUT: bounded; on failure the tail of the proxy's log
wait_gateway() {
    local log=$1 out=$2
    if ! "$PYTHON" scripts/gateway_lane.py wait "$GATEWAY_URL" "$START_TIMEOUT" "$GATEWAY_PID" \
        "$out"; then
        {
            echo "the last 30 lines of the proxy's log, ${log}:"
            tail -n 30 "$log" | sed 's/^/    | /'
        } >&2
        fail "the LiteLLM proxy did not come up at ${GATEWAY_URL} (GATEWAY_LANE_START_TIMEOUT=${START_TIMEOUT})"
    fi
}

# the bundled cost map, never fetched: the proxy's start-up does not wait on the network
step "starting the LiteLLM proxy"
began=$SECONDS
start_gateway "$WORK/gateway.log" LITELLM_LOCAL_MODEL_COST_MAP=True
step "waiting for ${GATEWAY_URL} to list the models (at most ${START_TIMEOUT} s)"
wait_gateway "$WORK/gateway.log" "$WORK/models-first.json"
echo "the proxy answered after $((SECONDS - began)) s: $(cat "$WORK/models-first.json")"

# run pytest; if it fails while the proxy it talks to has died, say so with the proxy's log
run_pytest() {
    local status=0
    timeout "$PYTEST_TIMEOUT" "$PYTHON" -m pytest "$@" || status=$?
    ((status == 124)) && fail "pytest did not finish in ${PYTEST_TIMEOUT} s (GATEWAY_LANE_PYTEST_TIMEOUT)"
    ((status == 0)) && return 0
    if [[ -n "$GATEWAY_PID" ]] && ! kill -0 "$GATEWAY_PID" 2>/dev/null; then
        {
            echo "the last 30 lines of the proxy's log, ${GATEWAY_LOG}:"
            tail -n 30 "$GATEWAY_LOG" | sed 's/^/    | /'
        } >&2
        fail "the LiteLLM proxy (pid ${GATEWAY_PID}) died while ${STEP}: the failures above are its death"
    fi
    exit "$status"
}

# --- 3. live, recording ------------------------------------------------------------------------
COMMON=(tests/gateway -p no:cacheprovider -p no:randomly --llm-backend=openai
    --llm-model=gw-model --llm-api-key-env=GATEWAY_LANE_KEY --llm-timeout=60
    "--llm-cassette-dir=${WORK}/cassettes" -rA)
export PYTEST_LLM_GATEWAY_LANE=1 GATEWAY_LANE_WORK="$WORK"

step "running tests/gateway live through the proxy (record mode once)"
GATEWAY_LANE_PHASE=live run_pytest "${COMMON[@]}" "--llm-host=${GATEWAY_URL}" \
    --llm-record-mode=once "--junitxml=${WORK}/live.xml"
"$PYTHON" scripts/gateway_lane.py served "$WORK" ||
    fail "LiteLLM did not route over both upstreams (config: ${WORK}/gateway.yaml)"

# --- 4. a newer cost map: the proxy's /v1/models changes, the identity must not ----------------
stop_gateway
if [[ -n "$COSTMAP_SRC" ]]; then
    step "restarting the proxy with a newer model cost map"
    "$PYTHON" scripts/gateway_lane.py costmap "$COSTMAP_SRC" "$WORK/static/costmap.json" gpt-4o-mini
    STATIC=$("$PYTHON" -c "import json, sys; print(json.load(open(sys.argv[1]))['static'])" \
        "$WORK/upstreams.json")
    start_gateway "$WORK/gateway-restarted.log" "LITELLM_MODEL_COST_MAP_URL=${STATIC}/costmap.json"
else
    step "restarting the proxy"
    start_gateway "$WORK/gateway-restarted.log" LITELLM_LOCAL_MODEL_COST_MAP=True
fi
wait_gateway "$WORK/gateway-restarted.log" "$WORK/models-restarted.json"
if [[ -n "$COSTMAP_SRC" ]]; then
    "$PYTHON" scripts/gateway_lane.py changed "$WORK/models-first.json" \
        "$WORK/models-restarted.json" gw-priced ||
        fail "the proxy did not take the newer cost map (log: ${WORK}/gateway-restarted.log)"
fi
step "replaying tests/gateway with the restarted proxy up (record mode none: identity checked)"
GATEWAY_LANE_PHASE=restarted run_pytest "${COMMON[@]}" "--llm-host=${GATEWAY_URL}" \
    --llm-record-mode=none -m "not live" "--junitxml=${WORK}/restarted.xml"

# --- 5. everything stopped: replay ---------------------------------------------------------------
stop_gateway
stop_pid "$UPSTREAMS_PID"
UPSTREAMS_PID=""
step "the proxy and the upstreams are stopped"
if grep -rqF "$GATEWAY_LANE_KEY" "$WORK/cassettes" "$WORK/live.xml"; then
    fail "the master key was written to a cassette or the report"
fi
step "replaying tests/gateway from cassettes with nothing running (record mode none)"
GATEWAY_LANE_PHASE=replay run_pytest "${COMMON[@]}" "--llm-host=${GATEWAY_URL}" \
    --llm-record-mode=none -m "not live" "--junitxml=${WORK}/replay.xml"

step "comparing the live and the replayed answers"
"$PYTHON" scripts/gateway_lane.py compare "$WORK/live.xml" "$WORK/restarted.xml"
"$PYTHON" scripts/gateway_lane.py compare "$WORK/live.xml" "$WORK/replay.xml"
STEP="done"
