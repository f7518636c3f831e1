"""Which hops to compute next: those whose DFT barrier would most change a run's shortlist.

A hop's DFT barrier changes the shortlist when it lands on the other side of the threshold than
predicted *and* the hop decides its material: a hop of a shortlisted material's 1D path (a DFT
barrier above the threshold may close the path), or the bottleneck hop of a material that missed
the shortlist (the hop whose barrier is the material's 1D percolation barrier: a DFT barrier
below the threshold may open its path). Score = P(other side) x decides, with the predicted
barrier taken as normal with the model's uncertainty: P = Phi(-|Em - threshold| / sigma).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from screener.screening.rundir import RunData


def _p_other_side(em: float, sigma: float, threshold: float) -> float:
    if not (math.isfinite(em) and math.isfinite(sigma)) or sigma <= 0:
        return 0.0
    return 0.5 * math.erfc(abs(em - threshold) / (sigma * math.sqrt(2.0)))


def suggest_hops(run: RunData, n: int = 10, threshold: float | None = None) -> list[dict[str, Any]]:
    """The ``n`` hops of a run whose DFT barrier would most change its shortlist, best first.

    Args:
        run: a finished run (:func:`screener.load_run`).
        n: how many.
        threshold: the shortlist threshold (default: the run's).

    Returns:
        Objects with ``material_id``, ``formula``, ``working_ion``, ``hop_id``, ``limit``,
        ``predicted_em_eV``, ``uncertainty_eV``, ``score`` (0..1), ``p_other_side`` and ``reason``.
    """
    t = float(threshold if threshold is not None else (run.info.get("config") or {}).get("threshold", 0.65))
    short = {(r.material_id, r.working_ion): r for r in run.shortlist.itertuples(index=False)}
    perc = {(r.material_id, r.working_ion): float(r.percolation_1d_eV) for r in run.structures.itertuples(index=False)}
    rows = []
    hops = run.hops[run.hops["predicted_em_eV"].notna()]
    for h in hops.itertuples(index=False):
        key = (h.material_id, h.working_ion)
        em, sigma = float(h.predicted_em_eV), float(h.uncertainty_eV)
        p = _p_other_side(em, sigma, t)
        if key in short:
            s = short[key]
            decides = h.hop_id in set(s.path_hop_ids if s.path_hop_ids is not None else [])
            why = (f"on the 1D path of shortlisted {h.formula} (rank {s.rank}): a DFT barrier above "
                   f"{t:g} eV would close it")
        else:
            bottleneck = perc.get(key, math.inf)
            decides = math.isfinite(bottleneck) and abs(em - bottleneck) < 1e-9
            why = (f"the bottleneck of {h.formula}'s 1D path ({bottleneck:.2f} eV, not shortlisted): a DFT "
                   f"barrier below {t:g} eV would open it")
        if not decides or p <= 0:
            continue
        rows.append({"material_id": h.material_id, "formula": h.formula, "working_ion": h.working_ion,
                     "hop_id": h.hop_id, "limit": h.limit, "predicted_em_eV": round(em, 4),
                     "uncertainty_eV": round(sigma, 4), "score": round(p, 4), "p_other_side": round(p, 4),
                     "reason": f"predicted {em:.2f} ± {sigma:.2f} eV: {p:.0%} chance of the other side of "
                               f"{t:g} eV; {why}"})
    rows.sort(key=lambda r: (-r["score"], r["material_id"], r["hop_id"], r["limit"]))
    return rows[: max(0, int(n))]


def hops_from_file(path: str) -> pd.DataFrame:
    """``(material_id, hop_id[, working_ion, limit])`` rows from ``suggest --json`` output or a CSV."""
    import json

    text = open(path, encoding="utf-8").read()
    try:
        data = json.loads(text)
        df = pd.DataFrame(data if isinstance(data, list) else data.get("hops", []))
    except ValueError:
        from io import StringIO

        df = pd.read_csv(StringIO(text))
    if "hop_id" not in df.columns:
        raise ValueError(f"{path}: no hop_id column or field")
    return df
