from __future__ import annotations

import subprocess
import sys

import pytest_llm
import pytest_llm.errors


def test_all_is_sorted_and_complete() -> None:
    assert pytest_llm.__all__ == sorted(pytest_llm.__all__)
    public = {n for n in dir(pytest_llm) if n[0].isupper() or n.startswith("assert_")}
    assert public <= set(pytest_llm.__all__)
    for name in pytest_llm.__all__:
        assert getattr(pytest_llm, name) is not None


def test_every_error_is_exported_and_derives_from_llm_error() -> None:
    for name in pytest_llm.errors.__all__:
        cls = getattr(pytest_llm.errors, name)
        assert issubclass(cls, UserWarning if issubclass(cls, Warning) else pytest_llm.LLMError)
        assert getattr(pytest_llm, name) is cls
        assert name in (pytest_llm.errors.__doc__ or ""), f"{name} missing from the drawn tree"


def test_quality_failures_are_assertion_errors_and_backend_errors_are_not() -> None:
    assert issubclass(pytest_llm.OutputInvalid, AssertionError)
    assert issubclass(pytest_llm.ScoreTooLow, AssertionError)
    assert not issubclass(pytest_llm.BackendError, AssertionError)


def test_loading_the_plugin_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, pytest_llm.plugin; heavy = ('ollama', 'httpx', 'jsonschema', 'pydantic'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_public_name_follows_its_module_when_that_is_imported_again() -> None:
    """pytester's in-process runs drop the modules they imported: a name of the package
    must then be the one of the module imported again, not of the dropped one (or a
    scorer's ``Score`` would not be the ``Score`` that ``run_scorer`` checks for)."""
    import importlib
    import sys

    import pytest_llm
    import pytest_llm.scoring

    assert pytest_llm.Score is pytest_llm.scoring.Score
    dropped = sys.modules.pop("pytest_llm.scoring")
    try:
        again = importlib.import_module("pytest_llm.scoring")
        assert again is not dropped
        assert pytest_llm.Score is again.Score
    finally:
        sys.modules["pytest_llm.scoring"] = pytest_llm.scoring = dropped
    assert pytest_llm.Score is dropped.Score
