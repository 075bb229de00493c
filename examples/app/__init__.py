"""A small application whose model calls `test_app.py` tests through `llm_proxy`."""
