"""Ticket triage: the application code under test. It knows nothing of pytest.

It calls its model through the official ``openai`` client, which reads ``OPENAI_BASE_URL``
and ``OPENAI_API_KEY`` from the environment, as it would in production. Under test,
``llm_proxy`` points that variable at itself, so these calls are recorded, replayed and
measured like harness calls, with no change here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Literal

from openai import OpenAI
from pydantic import BaseModel

#: The model the application asks for; a test maps it to the one that answers there.
MODEL = os.environ.get("TRIAGE_MODEL", "gpt-4o-mini")

SYSTEM = (
    "You triage customer support tickets. Reply with a JSON object: "
    '{"category": one of "billing", "bug", "account", "other", '
    '"urgent": true or false, "summary": one short sentence}.'
)


class Triage(BaseModel):
    category: Literal["billing", "bug", "account", "other"]
    urgent: bool
    summary: str


def client() -> OpenAI:
    return OpenAI(timeout=120, max_retries=1)


def triage(ticket: str) -> Triage:
    """Classify one ticket (the model answers JSON held to the ``Triage`` schema)."""
    with client() as openai:
        answer = openai.chat.completions.create(
            model=MODEL,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": ticket}],
            temperature=0,
            max_tokens=120,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "triage", "schema": Triage.model_json_schema()},
            },
        )
    return Triage.model_validate_json(answer.choices[0].message.content or "")


def reply_draft(ticket: str) -> Iterator[str]:
    """A first reply to the customer, streamed as the model writes it (for a live UI)."""
    with client() as openai:
        stream = openai.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": "You are a polite support agent. Be brief."},
                {"role": "user", "content": f"Write a two-sentence reply to: {ticket}"},
            ],
            temperature=0,
            max_tokens=80,
            stream=True,
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content
