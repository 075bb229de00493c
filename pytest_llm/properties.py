"""The names of the ``user_properties`` entries pytest-llm attaches to a test's report.

One owner for every name: the writers (the ``llm`` fixture's observer, the plugin's
hooks, the cassette, ladder and dataset parts) and the readers (the run report, the
pytest-html columns, the ``llm datasets`` and cassette summaries) import them from here.
Each value is JSON text; JUnit XML (``--junitxml``, xunit1) shows them as ``<property>``.
This module imports nothing, so any module may use it.
"""

from __future__ import annotations

__all__ = [
    "CALLS",
    "CASSETTE",
    "DATASETS",
    "FLAGGED",
    "NAMES",
    "RUNG",
    "SAMPLES",
    "SCORES",
]

CALLS = "llm"
"""Every model call of the test: a list of ``LLMResult.summary()``."""
SCORES = "llm_scores"
"""Every score computed in the test (``chat(scorer=)``, ``llm.score``, ``assert_score``)."""
SAMPLES = "llm_samples"
"""One ``SampleResult.summary()`` per ``llm.sample()`` call."""
DATASETS = "llm_dataset"
"""One ``DatasetResult.summary()`` per ``llm.evaluate()`` call."""
CASSETTE = "llm_cassette"
"""What the test's cassette did (recorded, replayed, refused)."""
RUNG = "llm_rung"
"""The model-ladder rung the test ran on."""
FLAGGED = "llm_flagged"
"""Why the test is flagged (``on_low_quality="flag"``)."""

#: Every name, in the order above.
NAMES = (CALLS, SCORES, SAMPLES, DATASETS, CASSETTE, RUNG, FLAGGED)
