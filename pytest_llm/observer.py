"""What a harness tells about its work: one observer per test, instead of callbacks.

A :class:`~pytest_llm.Harness` reports each finished call, score, sample run and dataset
to its :class:`Observer`; harnesses derived from it (the judge's, a scorer's, an
escalation's) share it, so nothing is forwarded by hand. Outside pytest the base class
ignores everything. Under pytest the ``llm`` fixture gives each test a
:class:`TestObserver`, which keeps what the run reports need and hands it to the test's
report (``user_properties``) at teardown. Anything else that makes model calls for a
test (the ``llm_proxy`` fixture) reports to the same observer, so its calls take the
same road to the terminal, the reports and the baseline gate.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import properties

if TYPE_CHECKING:
    from .datasets import Case, DatasetResult
    from .result import LLMResult
    from .sampling import SampleResult
    from .scoring import Score

__all__ = ["PROPERTIES", "JudgeObserver", "Observer", "TestObserver"]

#: The ``user_properties`` names a test's observer writes: calls, scores, samples, datasets.
PROPERTIES = (properties.CALLS, properties.SCORES, properties.SAMPLES, properties.DATASETS)
#: Made once: ``json.dumps`` with options makes an encoder per call.
_ENCODER = json.JSONEncoder(sort_keys=True, default=str)


class Observer:
    """Told of each finished call, score, sample run and dataset; ignores them all.

    Subclass it to watch a harness (``Harness(config, observer=...)``). Methods are called
    from the threads that ran the calls (``map``, ``sample``, ``evaluate``), so keep them
    short; appending to a list is safe.
    """

    def on_result(self, result: LLMResult) -> None:
        """A call ended: its result, success or not (a rejected answer too)."""

    def on_score(self, score: Score, result: LLMResult, attempt: str | None = None) -> None:
        """``result`` was scored; ``attempt`` is ``"accepted"``/``"rejected"`` when the score
        judged an answer of ``chat(scorer=)``, ``None`` for ``score()`` and assertions."""

    def on_sample(self, outcome: SampleResult) -> None:
        """A ``sample`` run ended (before its pass rate is gated)."""

    def on_dataset(self, outcome: DatasetResult) -> None:
        """An ``evaluate`` run ended (before its accuracy is gated)."""

    def select_cases(self, cases: list[Case]) -> list[Case]:
        """The cases of a dataset to run (all, by default)."""
        return cases


class JudgeObserver(Observer):
    """A judge harness's observer (``Harness.for_judge``): tells ``parent`` everything, each
    call's result marked ``metadata["role"] = "judge"``, so a report shows the judge apart
    from the route the test's own calls took."""

    def __init__(self, parent: Observer) -> None:
        self.parent = parent

    def on_result(self, result: LLMResult) -> None:
        from dataclasses import replace

        self.parent.on_result(replace(result, metadata={**result.metadata, "role": "judge"}))

    def on_score(self, score: Score, result: LLMResult, attempt: str | None = None) -> None:
        self.parent.on_score(score, result, attempt)

    def on_sample(self, outcome: SampleResult) -> None:
        self.parent.on_sample(outcome)

    def on_dataset(self, outcome: DatasetResult) -> None:
        self.parent.on_dataset(outcome)

    def select_cases(self, cases: list[Case]) -> list[Case]:
        return self.parent.select_cases(cases)


class TestObserver(Observer):
    """One test's observer: keeps its calls, scores, samples and datasets for its report.

    ``live`` prints each call as it ends (``--llm-live``); ``on_dataset`` and ``select``
    are the fixture's (each case as a subtest, ``--llm-cases``).
    """

    __test__ = False  # not a test class, whatever its name

    def __init__(
        self,
        *,
        live: Callable[[int, LLMResult], None] | None = None,
        dataset: Callable[[DatasetResult], None] | None = None,
        select: Callable[[list[Case]], list[Case]] | None = None,
    ) -> None:
        self.results: list[LLMResult] = []
        """Every call's result, in the order they ended (the ``llm calls`` section)."""
        self.scores: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.datasets: list[dict[str, Any]] = []
        self._live = live
        self._dataset = dataset
        self._select = select

    def on_result(self, result: LLMResult) -> None:
        self.results.append(result)
        if self._live is not None:
            self._live(len(self.results), result)

    def on_score(self, score: Score, result: LLMResult, attempt: str | None = None) -> None:
        self.scores.append({**score.as_dict(), "model": result.model, "attempt": attempt})

    def on_sample(self, outcome: SampleResult) -> None:
        self.samples.append(outcome.summary())

    def on_dataset(self, outcome: DatasetResult) -> None:
        self.datasets.append(outcome.summary())
        if self._dataset is not None:
            self._dataset(outcome)

    def select_cases(self, cases: list[Case]) -> list[Case]:
        return cases if self._select is None else self._select(cases)

    @property
    def called(self) -> bool:
        """Whether any model call ended."""
        return bool(self.results)

    def properties(self) -> list[tuple[str, str]]:
        """The ``user_properties`` of what was seen (JSON; names in :data:`PROPERTIES`)."""
        parts = ([r.summary() for r in self.results], self.scores, self.samples, self.datasets)
        return [
            (name, _ENCODER.encode(items))
            for name, items in zip(PROPERTIES, parts, strict=True)
            if items
        ]
