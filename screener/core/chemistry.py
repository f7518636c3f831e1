"""The one reader of working-ion lists: ``"Mg"``, ``"Mg,Ca"``, ``"mg, ca"`` or ``["Mg", "Ca"]``."""

from __future__ import annotations

from collections.abc import Sequence

from pymatgen.core.periodic_table import Element


def parse_chemistry(chemistry: str | Sequence[str]) -> list[str]:
    """Working ions as element symbols, in the order given, each once.

    Symbols are matched without regard to case (``ca`` is Ca, ``MG`` is Mg).

    Args:
        chemistry: a symbol, a comma-separated list of symbols, or a sequence of symbols.

    Returns:
        The element symbols, e.g. ``["Mg", "Ca"]``.

    Raises:
        ValueError: no symbol given, or one that is not a chemical element.
    """
    parts = chemistry.split(",") if isinstance(chemistry, str) else list(chemistry)
    ions: list[str] = []
    bad: list[str] = []
    for raw in parts:
        text = str(raw).strip()
        if not text:
            continue
        symbol = text[:1].upper() + text[1:].lower()
        if not Element.is_valid_symbol(symbol):
            bad.append(text)
        elif symbol not in ions:
            ions.append(symbol)
    if bad:
        raise ValueError(f"not a chemical element: {', '.join(bad)} (give symbols such as Mg, Ca, Zn, Li, Na, K, Al)")
    if not ions:
        raise ValueError("no working ion given (give symbols such as Mg or Mg,Ca)")
    return ions
