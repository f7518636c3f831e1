"""Orchestration built on top of the screener library: nightly incremental screening.

- :mod:`pipelines.increment`: sync a source, screen what changed, append, refresh ``latest/``.
- :mod:`pipelines.results`: the results dataset partitioned by date and chemistry.
- :mod:`pipelines.nightly`: ``python -m pipelines.nightly`` (the same as ``screener nightly``).

The library never imports this package; only :mod:`screener.cli` does.
"""
