"""Cassettes: whole pytest sessions (pytester) recording from and replaying without FakeOllama."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from pytest_llm.cassettes import _closest, _file_name
from pytest_llm.testing import FakeOllama, RecordedRequest, Reply

from .conftest import StallingServer, free_url

ANSWERS = """
import json

def show(tag, result):
    fields = ("content", "cached", "tokens_in", "tokens_out", "duration_ms", "ttft_ms", "retries")
    print("ANSWER", tag, json.dumps({f: getattr(result, f) for f in fields}))

def test_plain(llm):
    show("plain", llm.chat("Capital of France?"))

def test_json_after_a_retry(llm):
    show("json", llm.chat("Give JSON", json_mode=True, retry_delay_seconds=0))

def test_map(llm):
    for i, result in enumerate(llm.map(["one", "two", "three"])):
        show(f"map{i}", result)
"""


def reply(request: RecordedRequest) -> str:
    """A deterministic answer per prompt; JSON only after a rejected first attempt."""
    prompt = str(request.messages[-1]["content"]) if request.messages else ""
    if prompt == "Give JSON":
        return "not json yet"
    if "rejected" in prompt:
        return '{"ok": true}'
    return f"answer to {prompt}"


def run(pytester: pytest.Pytester, host: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(f"--llm-host={host}", "-p", "no:cacheprovider", "-s", *args)


def answers(result: pytest.RunResult) -> dict[str, dict[str, Any]]:
    out = {}
    for line in result.outlines:
        if "ANSWER " in line:  # -s output follows the module name on the first line
            tag, _, data = line.split("ANSWER ", 1)[1].partition(" ")
            out[tag] = json.loads(data)
    return out


def chats(fake: FakeOllama) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.path == "/api/chat"]


def cassette(pytester: pytest.Pytester, test: str, module: str = "test_answers") -> Path:
    return pytester.path / "cassettes" / module / f"{test}.json"


def test_once_records_then_replays_with_no_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    with FakeOllama(reply) as fake:
        recorded = run(pytester, fake.url, "--llm-record-mode=once")
        recorded_chats = len(chats(fake))
    recorded.assert_outcomes(passed=3)
    recorded.stdout.fnmatch_lines(["llm: model=llama3.2 *record_mode=once"])
    assert recorded_chats == 6  # plain, json twice (a retry), three for map
    live = answers(recorded)
    assert live["json"]["retries"] == 1 and not any(a["cached"] for a in live.values())

    with FakeOllama("a different answer") as other:  # a live server: asked who it is, once
        replayed = run(pytester, other.url, "--llm-record-mode=once")
        assert [(r.method, r.path) for r in other.requests] == [("GET", "/api/tags")]
    replayed.assert_outcomes(passed=3)
    again = answers(replayed)
    assert again.keys() == live.keys()
    for tag, answer in live.items():  # timings are kept to the microsecond
        rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in answer.items()}
        assert again[tag] == {**rounded, "cached": True}, tag

    stopped = run(pytester, free_url(), "--llm-record-mode=none")  # nothing listens there
    stopped.assert_outcomes(passed=3)
    assert answers(stopped) == again


def test_the_cassette_is_readable_json_without_secrets(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "sk-very-secret")
    pytester.makepyfile(test_answers=ANSWERS)
    with FakeOllama(reply) as fake:
        run(pytester, fake.url, "--llm-record-mode=once").assert_outcomes(passed=3)
        assert chats(fake)[0].headers["authorization"] == "Bearer sk-very-secret"
        port = str(fake.port)
    text = cassette(pytester, "test_plain").read_text()
    for secret in ("sk-very-secret", "uthorization", "Bearer", port, "127.0.0.1"):
        assert secret not in text
    document = json.loads(text)
    assert document["pytest_llm_cassette"] == 1
    (interaction,) = document["interactions"]
    assert interaction["request"] == {
        "endpoint": "chat",
        "backend": "ollama",
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "Capital of France?"}],
        "format": None,
        "temperature": 0.0,
        "seed": 42,
        "max_tokens": None,
        "options": {},
        "sample": None,
    }
    assert interaction["model_identity"] == FakeOllama().digest_of("llama3.2")
    response = interaction["response"]
    assert response["content"] == "answer to Capital of France?"
    assert response["tokens_out"] == 5 and response["duration_ms"] > 0
    assert response["done_reason"] == "stop"


def test_none_without_a_recording_names_the_test_file_and_command(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    result = run(pytester, free_url(), "--llm-record-mode=none", "-k", "plain")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*CassetteError: no recorded answer for test test_answers.py::test_plain "
            "(chat with model 'llama3.2', prompt 'Capital of France?') in record mode 'none': "
            "cassette cassettes/test_answers/test_plain.json does not exist. "
            "Record it with: pytest test_answers.py::test_plain --llm-record-mode=once*"
        ]
    )
    # The command it gives works as written.
    line = next(x for x in result.outlines if "Record it with: " in x)
    command = shlex.split(line.split("Record it with: ")[1].rsplit(" (", 1)[0])
    assert command[0] == "pytest"
    with FakeOllama(reply) as fake:
        run(pytester, fake.url, *command[1:]).assert_outcomes(passed=1)
    run(pytester, free_url(), "--llm-record-mode=none", "-k", "plain").assert_outcomes(passed=1)


@pytest.mark.parametrize("mode", ["none", "once", "new_episodes"])
def test_a_corrupted_cassette_is_an_error_naming_it_and_is_left_alone(
    pytester: pytest.Pytester, mode: str
) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    path = cassette(pytester, "test_plain")
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"pytest_llm_cassette": 1, "interactions": [\n  {"request": ')
    with FakeOllama(reply) as fake:
        result = run(pytester, fake.url, f"--llm-record-mode={mode}", "-k", "plain")
        assert chats(fake) == []
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*CassetteError: cassette cassettes/test_answers/test_plain.json cannot be parsed: "
            "Expecting value at line 2 column 15; it was left untouched: fix or delete it, or "
            "re-record the test with `pytest test_answers.py::test_plain --llm-record-mode=all`*"
        ]
    )
    assert path.read_bytes() == b'{"pytest_llm_cassette": 1, "interactions": [\n  {"request": '


def test_all_replaces_a_corrupted_or_old_cassette(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    path = cassette(pytester, "test_plain")
    path.parent.mkdir(parents=True)
    path.write_text("garbage")
    with FakeOllama("first") as fake:
        run(pytester, fake.url, "--llm-record-mode=all", "-k", "plain").assert_outcomes(passed=1)
        fake.script("second")
        result = run(pytester, fake.url, "--llm-record-mode=all", "-k", "plain")
        assert len(chats(fake)) == 2  # all: live every time
    assert answers(result)["plain"]["content"] == "second"
    (interaction,) = json.loads(path.read_text())["interactions"]
    assert interaction["response"]["content"] == "second"


def test_a_wrong_shape_is_an_error_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    path = cassette(pytester, "test_plain")
    path.parent.mkdir(parents=True)
    path.write_text('{"pytest_llm_cassette": 1, "interactions": [{"request": {}}]}')
    result = run(pytester, free_url(), "--llm-record-mode=none", "-k", "plain")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cassette * has a malformed interaction #0: it needs a *"])


def test_a_changed_prompt_or_model_is_a_miss_not_a_wrong_replay(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    with FakeOllama(reply, models=["llama3.2", "other"]) as fake:
        run(pytester, fake.url, "--llm-record-mode=once", "-k", "plain").assert_outcomes(passed=1)
    dead = free_url()
    other_model = run(pytester, dead, "--llm-record-mode=none", "-k", "plain", "--llm-model=other")
    other_model.assert_outcomes(errors=1)
    other_model.stdout.fnmatch_lines(
        [
            "*no recorded answer *model 'other'*: cassette cassettes/test_answers/test_plain.json "
            "has 1 other recording(s); the closest differs in model. Record it with: "
            "pytest test_answers.py::test_plain --llm-record-mode=new_episodes*"
        ]
    )
    pytester.makepyfile(test_answers=ANSWERS.replace("Capital of France?", "Capital of Spain?"))
    other_prompt = run(pytester, dead, "--llm-record-mode=once", "-k", "plain")
    other_prompt.assert_outcomes(errors=1)
    other_prompt.stdout.fnmatch_lines(
        ["*prompt 'Capital of Spain?') in record mode 'once': *the closest differs in messages.*"]
    )


def test_new_episodes_replays_the_known_and_records_the_new(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    with FakeOllama(reply) as fake:
        run(pytester, fake.url, "--llm-record-mode=once", "-k", "plain").assert_outcomes(passed=1)
        pytester.makepyfile(
            test_answers=ANSWERS.replace(
                'show("plain", llm.chat("Capital of France?"))',
                'show("plain", llm.chat("Capital of France?"))\n'
                '    show("new", llm.chat("Capital of Italy?"))',
            )
        )
        result = run(pytester, fake.url, "--llm-record-mode=new_episodes", "-k", "plain")
        asked = [r.messages[-1]["content"] for r in chats(fake)]
    result.assert_outcomes(passed=1)
    assert asked == ["Capital of France?", "Capital of Italy?"]  # France only when recording
    got = answers(result)
    assert got["plain"]["cached"] and not got["new"]["cached"]
    document = json.loads(cassette(pytester, "test_plain").read_text())
    prompts = [i["request"]["messages"][-1]["content"] for i in document["interactions"]]
    assert sorted(prompts) == ["Capital of France?", "Capital of Italy?"]


def test_new_episodes_records_again_when_the_model_digest_changed(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    path = cassette(pytester, "test_plain")
    with FakeOllama(reply) as fake:
        run(pytester, fake.url, "--llm-record-mode=once", "-k", "plain").assert_outcomes(passed=1)
        document = json.loads(path.read_text())
        served_digest = document["interactions"][0]["model_identity"]
        assert served_digest
        document["interactions"][0]["model_identity"] = "sha256:" + "0" * 64  # a re-pulled tag
        document["interactions"][0]["response"]["content"] = "stale answer"
        path.write_text(json.dumps(document))
        result = run(pytester, fake.url, "--llm-record-mode=new_episodes", "-k", "plain")
        assert len(chats(fake)) == 2
    result.assert_outcomes(passed=1)
    assert answers(result)["plain"] == {**answers(result)["plain"], "cached": False}
    assert answers(result)["plain"]["content"] == "answer to Capital of France?"
    (interaction,) = json.loads(path.read_text())["interactions"]
    assert interaction["model_identity"] == served_digest


def test_new_episodes_asks_a_wedged_server_for_digests_once_per_session(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    with FakeOllama(reply) as fake:
        run(pytester, fake.url, "--llm-record-mode=once").assert_outcomes(passed=3)
    with StallingServer() as wedged:
        result = run(pytester, wedged.url, "--llm-record-mode=new_episodes", "--llm-timeout=0.5")
    result.assert_outcomes(passed=3)  # every answer replayed, digests unknown
    assert all(a["cached"] for a in answers(result).values())
    assert wedged.accepted == 2  # a knock (it takes connections) and one digest request


def test_replaying_with_the_server_down_makes_no_client(pytester: pytest.Pytester) -> None:
    """The backend is made on first need: replayed answers with the server refusing
    connections need none (its identity is unknown without it), and no client is imported."""
    pytester.makepyfile(test_answers=ANSWERS)
    pytester.makeconftest(
        """
        import sys

        def pytest_sessionfinish(session):
            made = sorted(m for m in ("ollama", "pytest_llm.backends.ollama") if m in sys.modules)
            print("IMPORTED", made)
        """
    )
    with FakeOllama(reply) as fake:
        run(pytester, fake.url, "--llm-record-mode=once").assert_outcomes(passed=3)
    down = free_url()
    result = pytester.runpytest_subprocess(
        f"--llm-host={down}", "-p", "no:cacheprovider", "-s", "--llm-record-mode=none"
    )
    result.assert_outcomes(passed=3)
    assert all(a["cached"] for a in answers(result).values())
    result.stdout.fnmatch_lines(["*IMPORTED []*"])


def test_samples_are_recorded_and_replayed_apart(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_sampled(llm):
            outcome = llm.sample("Pick a colour", n=5, temperature=0.8)
            print("SAMPLES", [(r.content, r.cached) for r in outcome.results])
        """
    )

    def by_seed(request: RecordedRequest) -> str:
        return f"colour #{request.body['options']['seed']}"

    with FakeOllama(by_seed) as fake:
        recorded = run(pytester, fake.url, "--llm-record-mode=once")
    recorded.assert_outcomes(passed=1)
    replayed = run(pytester, free_url(), "--llm-record-mode=none")
    replayed.assert_outcomes(passed=1)
    colours = [f"colour #{42 + i}" for i in range(5)]
    assert f"SAMPLES {[(c, False) for c in colours]}" in recorded.stdout.str()
    assert f"SAMPLES {[(c, True) for c in colours]}" in replayed.stdout.str()
    document = json.loads(
        cassette(
            pytester, "test_sampled", "test_samples_are_recorded_and_replayed_apart"
        ).read_text()
    )
    assert sorted(i["request"]["sample"] for i in document["interactions"]) == [0, 1, 2, 3, 4]


def test_embeddings_are_recorded_by_each_test_so_each_replays_alone(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_embed="""
        def test_a(llm):
            print("VECTOR", llm.embed(["same text"], model="nomic-embed-text")[0][:3])

        def test_b(llm):  # the session's embedding cache must not hide this call
            print("VECTOR", llm.embed(["same text"], model="nomic-embed-text")[0][:3])
        """
    )
    with FakeOllama(models=["nomic-embed-text"]) as fake:
        live = run(pytester, fake.url, "--llm-record-mode=once")
    live.assert_outcomes(passed=2)
    alone = run(pytester, free_url(), "--llm-record-mode=none", "-k", "test_b")
    alone.assert_outcomes(passed=1)
    vectors = [x.split("VECTOR ")[1] for x in live.outlines + alone.outlines if "VECTOR " in x]
    assert len(vectors) == 3 and len(set(vectors)) == 1


def test_cassette_dir_from_option_and_from_ini(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_answers="""
        class TestGroup:
            def test_in_class(self, llm):
                llm.chat("hi")
        """
    )
    with FakeOllama("hello") as fake:
        run(pytester, fake.url, "--llm-record-mode=once", "--llm-cassette-dir=tapes")
        assert (pytester.path / "tapes/test_answers/TestGroup.test_in_class.json").is_file()
        pytester.mkdir("sub")
        pytester.makeini("[pytest]\nllm_record_mode = once\nllm_cassette_dir = sub/recordings\n")
        run(pytester, fake.url).assert_outcomes(passed=1)
        assert (
            pytester.path / "sub/recordings/test_answers/TestGroup.test_in_class.json"
        ).is_file()
    result = run(pytester, free_url(), "--llm-record-mode=none", "-k", "nothing_matches_this")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_a_miss_suggests_the_cassette_dir_given_on_the_command_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    result = run(pytester, free_url(), "--llm-record-mode=none", "--llm-cassette-dir=my tapes")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*cassette my tapes/test_answers/test_plain.json does not exist*"
            "--llm-record-mode=once '--llm-cassette-dir=my tapes'*"
        ]
    )


def test_an_invalid_record_mode_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llm-record-mode=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*llm record mode 'sometimes' is invalid: "
            "expected one of off, none, verify, once, new_episodes, all"
        ]
    )


def test_off_reads_and_writes_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    path = cassette(pytester, "test_plain")
    path.parent.mkdir(parents=True)
    path.write_text("garbage")
    with FakeOllama(reply) as fake:
        result = run(pytester, fake.url)
    result.assert_outcomes(passed=3)
    assert not any(a["cached"] for a in answers(result).values())
    assert sorted(p.name for p in path.parent.iterdir()) == ["test_plain.json"]
    assert path.read_text() == "garbage"


def test_eight_workers_recording_200_tests_leave_200_complete_cassettes(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_many="""
        import pytest

        @pytest.mark.parametrize("i", range(200))
        def test_many(llm, i):
            assert llm.chat(f"say {i}").content == f"answer to say {i}"
        """
    )
    with FakeOllama(reply) as fake:
        result = pytester.runpytest_subprocess(
            f"--llm-host={fake.url}", "--llm-record-mode=once", "-n", "8", "-p", "no:cacheprovider"
        )
    result.assert_outcomes(passed=200)
    folder = pytester.path / "cassettes" / "test_many"
    files = sorted(folder.iterdir())
    assert len(files) == 200  # and no stray temporary files
    for i in range(200):
        (interaction,) = json.loads((folder / f"test_many[{i}].json").read_text())["interactions"]
        assert interaction["response"]["content"] == f"answer to say {i}"


def test_file_names_are_portable_and_distinct() -> None:
    assert _file_name("test_x[a-1]") == "test_x[a-1].json"
    assert _file_name("TestA.test_x") == "TestA.test_x.json"
    slash, colon = _file_name("test_x[a/b]"), _file_name("test_x[a:b]")
    assert slash.startswith("test_x[a_b]-") and colon.startswith("test_x[a_b]-")
    assert slash != colon
    assert len(_file_name("test_" + "x" * 500)) < 140


def test_a_miss_names_the_fields_of_the_closest_recording() -> None:
    asked = {"model": "a", "messages": ["hi"], "seed": 1}
    recorded = [
        {"model": "b", "messages": ["yo"], "seed": 1},
        {"model": "a", "messages": ["yo"], "seed": 1},
    ]
    assert _closest(asked, recorded).endswith("differs in messages")
    assert _closest(asked, []) == "has no recordings"


# --- a changed model is never replayed silently ---------------------------------------------

CHANGED = "2" * 64  # the digest after a re-pull


@pytest.mark.parametrize("backend", ["ollama", "openai"])
def test_once_none_and_verify_refuse_to_replay_a_changed_model(
    pytester: pytest.Pytester, backend: str
) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    path = cassette(pytester, "test_plain")
    with FakeOllama(reply) as fake:
        url = fake.url + ("/v1" if backend == "openai" else "")
        options = (f"--llm-backend={backend}", "-k", "plain")
        run(pytester, url, "--llm-record-mode=once", *options).assert_outcomes(passed=1)
        recorded = path.read_text()
        old = json.loads(recorded)["interactions"][0]["model_identity"]
        run(pytester, url, "--llm-record-mode=verify", *options).assert_outcomes(passed=1)
        fake.digests["llama3.2"] = CHANGED
        fake.script("a worse answer")
        asked = len(fake.requests)
        for mode in ("once", "none", "verify"):
            result = run(pytester, url, f"--llm-record-mode={mode}", *options)
            result.assert_outcomes(errors=1)
            result.stdout.fnmatch_lines(
                [
                    f"*CassetteError: the model changed since test test_answers.py::test_plain "
                    f"was recorded: model 'llama3.2' was {old}, {backend} at * now serves *; "
                    "replaying would test the old model. Re-record with: pytest "
                    "test_answers.py::test_plain --llm-record-mode=all*"
                ]
            )
        later = {r.path for r in fake.requests[asked:]}  # no answer was asked for
        assert later <= {"/api/tags", "/v1/models"}
    assert path.read_text() == recorded  # nothing re-written
    if backend == "ollama":
        assert old == FakeOllama().digest_of("llama3.2")
    else:  # assembled from /v1/models: id, owner and the pull time
        assert old.startswith("created=") and "id=llama3.2:latest owned_by=library" in old


def test_new_episodes_re_records_a_changed_openai_model_and_says_so(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    with FakeOllama(reply) as fake:
        url, options = fake.url + "/v1", ("--llm-backend=openai", "-k", "plain")
        run(pytester, url, "--llm-record-mode=once", *options).assert_outcomes(passed=1)
        fake.digests["llama3.2"] = CHANGED
        fake.script("the new model's answer")
        result = run(pytester, url, "--llm-record-mode=new_episodes", *options)
    result.assert_outcomes(passed=1)
    assert answers(result)["plain"]["content"] == "the new model's answer"
    result.stdout.fnmatch_lines(
        [
            "*= llm cassettes =*",
            "test_answers.py::test_plain: re-recorded, the model changed: 'llama3.2' was "
            "created=* id=llama3.2:latest owned_by=library, now created=* id=llama3.2:latest "
            "owned_by=library",
        ]
    )
    (interaction,) = json.loads(cassette(pytester, "test_plain").read_text())["interactions"]
    assert interaction["response"]["content"] == "the new model's answer"


def test_a_declared_model_version_is_part_of_the_identity(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    with FakeOllama(reply) as fake:
        url, options = fake.url + "/v1", ("--llm-backend=openai", "-k", "plain")
        run(pytester, url, "--llm-record-mode=once", "--llm-model-version=q4-2024", *options)
        (interaction,) = json.loads(cassette(pytester, "test_plain").read_text())["interactions"]
        assert interaction["model_identity"].endswith(" version=q4-2024")
        result = run(pytester, url, "--llm-record-mode=none", "--llm-model-version=q8", *options)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*was created=* version=q4-2024, * now serves * version=q8;*"])


def test_verify_needs_the_server_and_none_does_not(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    with FakeOllama(reply) as fake:
        run(pytester, fake.url, "--llm-record-mode=once", "-k", "plain").assert_outcomes(passed=1)
    down = free_url()
    run(pytester, down, "--llm-record-mode=none", "-k", "plain").assert_outcomes(passed=1)
    result = run(pytester, down, "--llm-record-mode=verify", "-k", "plain")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*CassetteError: record mode 'verify' checks the live model against the recording "
            "of test test_answers.py::test_plain, but ollama at * tells no identity for model "
            "'llama3.2' (is it running?); replay without the check in record mode 'none'*"
        ]
    )


# --- recordings survive a bad run, and dead ones are found ------------------------------------


def test_a_test_that_errors_in_record_mode_all_keeps_its_cassette(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    with FakeOllama(reply) as fake:
        run(pytester, fake.url, "--llm-record-mode=once").assert_outcomes(passed=3)
    files = {t: cassette(pytester, t).read_text() for t in ("test_plain", "test_map")}

    def flaky(request: RecordedRequest) -> str | Reply:  # the map's second prompt breaks
        if "two" in str(request.messages[-1]["content"]):
            return Reply(status=404, error='model "llama3.2" not found')
        return reply(request)

    with FakeOllama(flaky) as broken:
        result = run(pytester, broken.url, "--llm-record-mode=all", "-k", "not json")
    result.assert_outcomes(passed=1, errors=1)
    assert cassette(pytester, "test_map").read_text() == files["test_map"]  # not the partial one
    run(pytester, free_url(), "--llm-record-mode=none").assert_outcomes(passed=3)


def test_unused_recordings_and_cassettes_are_reported_and_pruned(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_answers=ANSWERS)
    with FakeOllama(reply) as fake:
        run(pytester, fake.url, "--llm-record-mode=once").assert_outcomes(passed=3)
        # the prompt of test_plain is edited, test_map is renamed
        edited = ANSWERS.replace("Capital of France?", "Capital of Italy?")
        pytester.makepyfile(test_answers=edited.replace("def test_map", "def test_many"))
        result = run(pytester, fake.url, "--llm-record-mode=none")
        result.assert_outcomes(passed=1, errors=2)
        result.stdout.fnmatch_lines(
            ["*Record it with: pytest test_answers.py::test_plain "
             "--llm-record-mode=new_episodes --llm-prune*"]
        )  # fmt: skip
        result = run(pytester, fake.url, "--llm-record-mode=new_episodes")
        result.assert_outcomes(passed=3)
        result.stdout.fnmatch_lines(
            [
                "*= llm cassettes =*",
                "test_answers.py::test_plain: 1 unused recording(s) in its cassette",
                "cassettes/test_answers/test_map.json: cassette of no test (unused)",
                "re-record what changed and delete what no test uses with: "
                "pytest --llm-record-mode=new_episodes --llm-prune",
            ]
        )
        assert cassette(pytester, "test_map").exists()
        spread = run(pytester, fake.url, "--llm-record-mode=none", "-n", "2")  # the controller
        spread.assert_outcomes(passed=3)  # learns the tests from the workers' collection
        spread.stdout.fnmatch_lines(["cassettes/test_answers/test_map.json: cassette of no test*"])
        # part of the suite: a test that ran prunes its own cassette, no file is deleted
        for args in [("-k", "plain"), ("test_answers.py::test_plain",)]:
            partial = run(pytester, fake.url, "--llm-record-mode=none", "--llm-prune", *args)
            partial.assert_outcomes(passed=1)
            assert cassette(pytester, "test_map").exists()
            if args[0] == "-k":
                partial.stdout.fnmatch_lines(
                    ["test_answers.py::test_plain: 1 unused recording(s) pruned"]
                )
        pruned = run(pytester, fake.url, "--llm-record-mode=new_episodes", "--llm-prune")
    pruned.assert_outcomes(passed=3)
    pruned.stdout.fnmatch_lines(
        ["cassettes/test_answers/test_map.json: cassette of no test (deleted)"]
    )
    assert not cassette(pytester, "test_map").exists()
    (interaction,) = json.loads(cassette(pytester, "test_plain").read_text())["interactions"]
    assert interaction["request"]["messages"][-1]["content"] == "Capital of Italy?"
    clean = run(pytester, free_url(), "--llm-record-mode=none")
    clean.assert_outcomes(passed=3)
    assert "llm cassettes" not in clean.stdout.str()


TRAP = "def test_trap():\n    raise AssertionError('collected from a cassette folder')\n"


@pytest.mark.parametrize("where", ["default", "--llm-cassette-dir"])
def test_collection_does_not_walk_cassette_folders(pytester: pytest.Pytester, where: str) -> None:
    """A module's cassette folder holds cassettes only: pytest does not look into it for
    tests (a suite has thousands of cassette files). A folder named ``cassettes`` that is no
    module's cassette folder is collected as usual."""
    pytester.makepyfile(test_answers=ANSWERS)
    root = pytester.path / ("cassettes" if where == "default" else "tapes" / Path("sub"))
    args = () if where == "default" else ("--llm-cassette-dir=tapes/sub",)
    with FakeOllama(reply) as fake:
        run(pytester, fake.url, "--llm-record-mode=once", *args).assert_outcomes(passed=3)
    folder = root / "test_answers"
    assert len(list(folder.glob("*.json"))) == 3
    (folder / "test_trap.py").write_text(TRAP)  # would fail if it were collected
    (root / "test_mine.py").write_text("def test_mine():\n    pass\n")  # not a cassette folder
    result = run(pytester, free_url(), "--llm-record-mode=none", *args)
    result.assert_outcomes(passed=4)
    assert "test_trap" not in result.stdout.str()
