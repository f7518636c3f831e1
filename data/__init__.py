"""Package data of screener: installed as ``screener.assets`` (see ``pyproject.toml``).

``hosts/``: the bundled catalogue of intercalation hosts; ``models/``: the shipped models.
"""
