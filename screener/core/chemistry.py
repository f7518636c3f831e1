"""Chemistry shared by the stages: the reader of working-ion lists and the anion guess.

:func:`parse_chemistry` is the one reader of ``"Mg"``, ``"Mg,Ca"``, ``"mg, ca"`` or ``["Mg", "Ca"]``.
:func:`anion_elements` guesses the anions of a host: the most electronegative element always, and
any other element among O, S, Se, Te, F, Cl, Br, I, N whose Pauling electronegativity is within 0.8
of it (S in sulphates and P in phosphates are cations, S next to Cl in argyrodites an anion).
"""

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


#: Elements that can be anions of a host.
ANION_CANDIDATES = frozenset({"O", "S", "Se", "Te", "F", "Cl", "Br", "I", "N"})
#: An anion candidate within this electronegativity of the most electronegative element is an anion.
ANION_X_WINDOW = 0.8


def _pauling(symbol: str) -> float:
    x = Element(symbol).X
    return float(x) if x == x and x != float("inf") else 0.0  # noble gases: NaN


def anion_elements(host_elements: Sequence[str]) -> frozenset[str]:
    """Guess which host elements are anions (see the module docstring for the rule).

    Args:
        host_elements: the distinct element symbols of the host.

    Returns:
        The anion symbols; never empty when ``host_elements`` is not.
    """
    els = sorted(set(host_elements))
    if not els:
        return frozenset()
    xs = {e: _pauling(e) for e in els}
    top = max(els, key=lambda e: xs[e])
    anions = {top}
    for e in els:
        if e in ANION_CANDIDATES and xs[e] >= xs[top] - ANION_X_WINDOW:
            anions.add(e)
    return frozenset(anions)
