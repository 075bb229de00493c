"""pytest-llm's benchmarks: ``python -m bench`` runs them all and prints one table.

Each benchmark is a module of this package with a ``rows(settings)`` function; the list
of them is ``bench._registry.BENCHMARKS``. The modules also run alone
(``python -m bench.overhead``) and print their figures in more detail.
"""
