"""A dataset test: a table of support tickets, classified by the model, gated on accuracy.

`llm.evaluate` asks every case of data/tickets.jsonl at once (up to `concurrency` in
flight), reports each case as its own subtest (`pytest -o verbosity_subtests=1` lists
them all) and fails the test when the accuracy is under `min_accuracy`. The llm datasets
section at the end of the run shows the accuracy with its 95% interval, the confusion table
and each label's precision and recall. `--llm-cases=crash,refund` runs only those cases.

The same cases can be one test each instead (`cases_param`): see README, "Datasets".
"""

from __future__ import annotations

import pytest

from pytest_llm import Harness, load_cases

CASES = load_cases("data/tickets.jsonl", id="id")  # read from this file's directory

LABEL = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["billing", "bug", "feature"]}},
    "required": ["label"],
}


# SmolLM2-135M is a very small model: the schema keeps each answer to one of the three
# labels, but as recorded it gets 4 of the 9 tickets right (44%, 95% CI 19%-73%: it calls
# every bug a feature, see the llm datasets section). min_accuracy=0.4 is what it meets, so
# that the example passes as recorded; a model worth shipping would be held to far more.
@pytest.mark.llm(min_accuracy=0.4, max_retries=0)
def test_ticket_classification(llm: Harness) -> None:
    outcome = llm.evaluate(
        CASES,
        "Ticket: {text}\nIs this ticket about billing (payments, refunds, invoices), a bug "
        "(something broken or an error) or a feature (a request for something new)?",
        schema=LABEL,
        label="label",  # the parsed answer's field compared with each case's "label"
        expected="label",
    )
    assert outcome.total == len(CASES)
