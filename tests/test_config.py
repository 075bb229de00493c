from __future__ import annotations

import dataclasses

import pytest

from pytest_llm import ConfigError, HarnessConfig
from pytest_llm.config import (
    coerce,
    config_field_names,
    from_environment,
    merge_markers,
    normalize_host,
    resolve,
)


def test_defaults_are_deterministic() -> None:
    c = HarnessConfig()
    assert c.temperature == 0.0
    assert c.seed == 42
    assert c.models == ("llama3.2",)


def test_config_is_frozen_and_keyword_only() -> None:
    c = HarnessConfig(model="m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.model = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        HarnessConfig("m")  # type: ignore[misc]


def test_design_fields_are_all_present() -> None:
    expected = {
        "model", "temperature", "max_tokens", "json_mode", "timeout_seconds", "max_retries",
        "retry_delay_seconds", "host", "backend", "seed", "keep_alive", "min_score",
        "escalate_to", "judge_model", "samples", "min_pass_rate", "concurrency",
        "api_key_env",  # added with the OpenAI-compatible backend
        "check_feedback",  # re-asks tell a check's message only when asked to
        "model_version",  # declared model identity, for servers that tell no digest
        "on_low_quality",  # flag instead of fail
        "total_timeout_seconds",  # one bound on every attempt and pause of a call
        "min_accuracy",  # the dataset gate (llm.evaluate)
    }  # fmt: skip
    assert set(config_field_names()) == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.1),
        ("temperature", "hot"),
        ("max_retries", -1),
        ("max_retries", 1.5),
        ("timeout_seconds", 0),
        ("min_score", 1.5),
        ("backend", "grpc"),
        ("model", ""),
        ("samples", 0),
        ("json_mode", "yes"),
        ("concurrency", 0),
    ],
)
def test_bad_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"llm setting {field}="):
        HarnessConfig(**{field: value})


@pytest.mark.parametrize("value", ["sk-live-1234567890", "1ABC", "", "MY KEY", 5])
def test_api_key_env_must_be_a_variable_name_and_is_not_echoed(value: object) -> None:
    with pytest.raises(ConfigError, match="NAME of an environment variable") as info:
        HarnessConfig(api_key_env=value)  # type: ignore[arg-type]
    assert "sk-live" not in str(info.value)


def test_api_key_env_accepts_a_variable_name() -> None:
    assert HarnessConfig(api_key_env="VLLM_KEY").api_key_env == "VLLM_KEY"
    assert HarnessConfig().api_key_env is None  # the backend's usual variable


def test_escalate_to_accepts_a_list_or_one_name() -> None:
    assert HarnessConfig(escalate_to=["a", "b"]).escalate_to == ("a", "b")  # type: ignore[arg-type]
    assert HarnessConfig(escalate_to="big").models == ("llama3.2", "big")  # type: ignore[arg-type]


def test_replace_rejects_unknown_fields() -> None:
    expected = "valid fields are: api_key_env, backend, check_feedback, concurrency"
    with pytest.raises(ConfigError, match=expected):
        HarnessConfig().replace(modle="x")


def test_markers_merge_closest_first() -> None:
    merged = merge_markers([{"model": "function"}, {"model": "class", "seed": 1}, {"seed": 9}])
    assert merged == {"model": "function", "seed": 1}


def test_resolve_marker_beats_base() -> None:
    c = resolve(base={"model": "from-cli", "max_retries": 5}, markers=[{"model": "marker"}])
    assert (c.model, c.max_retries) == ("marker", 5)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("localhost", "http://localhost:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://gpu-box:11434/", "http://gpu-box:11434"),
        ("https://example.com", "https://example.com"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ],
)
def test_normalize_host(given: str, expected: str) -> None:
    assert normalize_host(given) == expected


def test_ollama_host_from_environment() -> None:
    assert from_environment({"OLLAMA_HOST": "box:1234"}) == {"host": "http://box:1234"}
    assert from_environment({}) == {}


def test_coerce_names_the_source() -> None:
    assert coerce("max_retries", "3", "--llm-retries") == 3
    with pytest.raises(ConfigError, match="--llm-retries='many'"):
        coerce("max_retries", "many", "--llm-retries")


@pytest.mark.parametrize("value", [None, 5])
def test_escalate_to_of_the_wrong_type_names_the_field(value: object) -> None:
    with pytest.raises(ConfigError, match="llm setting escalate_to="):
        HarnessConfig(escalate_to=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["http://gpu1:1l434", "http://[::1:11434", "ftp://gpu1"])
def test_a_malformed_host_is_a_config_error(host: str) -> None:
    with pytest.raises(ConfigError, match="is not a valid URL"):
        HarnessConfig(host=host)


def test_every_config_normalizes_its_host() -> None:
    assert HarnessConfig(host="gpu1").host == "http://gpu1:11434"
    assert HarnessConfig().replace(host="0.0.0.0:8080").host == "http://127.0.0.1:8080"
