"""``python -m pytest_llm``: merge, gate and render JSON reports (:mod:`pytest_llm.cli`)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
