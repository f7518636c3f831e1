"""Command-line layer: ``python -m screener COMMAND`` (:mod:`screener.cli.main`), one module per command.

Only this layer may reach into ``pipelines`` (the nightly orchestration built on the library).
"""
