"""The tables of a run (hops, structures, shortlist, failures): their columns, sort orders and assembly."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from screener.pathways.percolation import (
    percolation_barriers,
    percolation_probabilities,
)

HOP_COLUMNS = [
    "material_id", "formula", "working_ion", "limit", "hop_id", "length_A", "multiplicity",
    "predicted_em_eV", "uncertainty_eV", "model_version", "source", "structure_hash",
    "hop_label", "band_sites", "isite_wyckoff", "esite_wyckoff", "isite_kind", "esite_kind",
]


STRUCTURE_COLUMNS = [
    "material_id", "formula", "working_ion", "source", "structure_hash", "spacegroup",
    "n_hops", "n_hops_predicted", "lowest_hop_em_eV",
    "percolation_1d_eV", "percolation_2d_eV", "percolation_3d_eV",
    "percolation_1d_vacancy_eV", "percolation_1d_dilute_eV",
    "p_percolates_1d", "p_percolates_2d", "p_percolates_3d", "dimensionality", "passes", "model_version",
]


FAILURE_COLUMNS = ["item", "working_ion", "stage", "error_type", "message"]


#: Keys of a batch part's rows: one row per hop, a prediction or a failure.
BATCH_COLUMNS = ["material_id", "working_ion", "hop_id", "predicted_em_eV", "uncertainty_eV",
                 "stage", "error_type", "message"]


def _finite_or_inf(x: float) -> float:
    return float(x) if x is not None and not math.isnan(x) else math.inf


def shortlist_table(structures: pd.DataFrame, hops: pd.DataFrame) -> pd.DataFrame:
    """Ranked shortlist: the ``passes`` rows of ``structures`` with the hops that make the path
    (:func:`with_path`). An empty shortlist keeps every column."""
    short = structures.loc[structures["passes"].astype(bool).to_numpy()].copy()
    short.insert(0, "rank", np.arange(1, len(short) + 1))
    return with_path(short, hops)


def with_path(rows: pd.DataFrame, hops: pd.DataFrame) -> pd.DataFrame:
    """``rows`` of the structures table with ``path_hop_ids`` and ``path_max_uncertainty_eV``.

    ``path_hop_ids`` lists every hop whose label is open (in all limits) at the material's 1D
    percolation barrier; ``path_max_uncertainty_eV`` is the largest uncertainty among them.
    """
    short = rows.copy()
    who = ["material_id", "working_ion"]
    h = hops.loc[:, [*who, "hop_label", "hop_id", "predicted_em_eV", "uncertainty_eV"]]
    h = h.merge(short[[*who, "percolation_1d_eV"]].drop_duplicates(who), on=who, how="inner")
    # A label is on the path when its dearest limit is open at the material's 1D barrier; a limit
    # without a prediction never opens (as in the conservative percolation).
    worst = (h.assign(em=h["predicted_em_eV"].fillna(np.inf))
             .groupby([*who, "hop_label"], sort=False)["em"].transform("max"))
    # a material that never percolates (1D barrier inf or missing) has no path
    on_path = h.loc[(np.isfinite(h["percolation_1d_eV"].astype(float)) &
                     (worst <= h["percolation_1d_eV"] + 1e-12)).to_numpy()]
    grouped = on_path.groupby(who, sort=False)
    paths = grouped["hop_id"].agg(lambda ids: sorted(ids.unique().tolist()))
    worst_unc = grouped["uncertainty_eV"].max()
    index = pd.MultiIndex.from_frame(short[who])
    short["path_hop_ids"] = pd.Series([paths.get(k, []) for k in index], index=short.index, dtype=object)
    short["path_max_uncertainty_eV"] = pd.Series(worst_unc.reindex(index).to_numpy(dtype=float),
                                                 index=short.index, dtype=float)
    return short.reset_index(drop=True)


def assemble_tables(host_results: list[dict[str, Any]], predictions: dict, model_version: str,
                    threshold: float) -> dict[str, pd.DataFrame]:
    """Hop, structure, shortlist and failure tables from per-host results and predictions."""
    hop_rows, struct_rows, fail_rows = [], [], []
    for res in host_results:
        fail_rows.extend(res["failures"])
        fail_rows.extend(res.get("extra_failures", []))
        if res["structure"] is None:
            continue
        ion = res["ion"]
        em_by_id, unc_by_id = {}, {}
        for rec in res["hops"]:
            em, unc = predictions.get((res["item"], ion, rec["hop_id"]), (math.nan, math.nan))
            hop_rows.append({**rec, "predicted_em_eV": em, "uncertainty_eV": unc,
                             "model_version": model_version})
            em_by_id[rec["hop_id"]], unc_by_id[rec["hop_id"]] = em, unc
        perc: dict[str, dict[str, float]] = {}
        em_by_limit: dict[int, list[float]] = {}
        sd_by_limit: dict[int, list[float]] = {}
        for limit in dict.fromkeys(r["limit"] for r in res["hops"]):
            by_label = {r["hop_label"]: em_by_id[r["hop_id"]] for r in res["hops"] if r["limit"] == limit}
            perc[limit] = percolation_barriers(res["edges"], by_label)
            for r in res["hops"]:
                if r["limit"] == limit:
                    em_by_limit.setdefault(r["hop_label"], []).append(em_by_id[r["hop_id"]])
                    sd_by_limit.setdefault(r["hop_label"], []).append(unc_by_id[r["hop_id"]])
        # A hop is open only when it is open in every limit (charged and discharged).
        conservative = {lab: (math.nan if any(math.isnan(e) for e in ems) else max(ems))
                        for lab, ems in em_by_limit.items()}
        p = percolation_barriers(res["edges"], conservative)
        prob = percolation_probabilities(res["edges"], em_by_limit, sd_by_limit, threshold)
        ems = [e for e in em_by_id.values() if not math.isnan(e)]
        struct_rows.append({
            **res["structure"],
            "n_hops": len({r["hop_label"] for r in res["hops"]}),
            "n_hops_predicted": len(ems),
            "lowest_hop_em_eV": min(ems) if ems else math.nan,
            "percolation_1d_eV": p["1D"], "percolation_2d_eV": p["2D"], "percolation_3d_eV": p["3D"],
            "percolation_1d_vacancy_eV": perc.get("vacancy", {}).get("1D", math.inf),
            "percolation_1d_dilute_eV": perc.get("dilute", {}).get("1D", math.inf),
            "p_percolates_1d": prob["1D"], "p_percolates_2d": prob["2D"], "p_percolates_3d": prob["3D"],
            "dimensionality": sum(prob[k] >= 0.5 for k in ("1D", "2D", "3D")),
            "model_version": model_version,
        })
    return ranked_tables(pd.DataFrame(hop_rows, columns=HOP_COLUMNS),
                         pd.DataFrame(struct_rows, columns=STRUCTURE_COLUMNS),
                         pd.DataFrame(fail_rows, columns=FAILURE_COLUMNS), threshold, sort_failures=False)


#: Sort orders of the tables: hops by barrier, materials by 1D percolation barrier.
HOP_ORDER = ["predicted_em_eV", "material_id", "hop_id", "limit"]
STRUCTURE_ORDER = ["percolation_1d_eV", "lowest_hop_em_eV", "material_id", "working_ion"]
FAILURE_ORDER = ["working_ion", "item", "stage"]


def ranked_tables(hops: pd.DataFrame, structures: pd.DataFrame, failures: pd.DataFrame, threshold: float,
                  sort_failures: bool = True) -> dict[str, pd.DataFrame]:
    """The four tables of a run in their schema and order, ``passes`` set for ``threshold``.

    Args:
        hops, structures, failures: rows in any order (columns beyond the schema are dropped).
        threshold: a material passes when its 1D percolation barrier is below this (eV).
        sort_failures: sort failures by ion and item (a screen keeps them in input order).

    Returns:
        ``hops``, ``structures``, ``shortlist`` and ``failures``.
    """
    hops = hops.reindex(columns=HOP_COLUMNS).sort_values(
        HOP_ORDER, na_position="last", kind="mergesort").reset_index(drop=True)
    structures = structures.reindex(columns=STRUCTURE_COLUMNS).copy()
    structures["passes"] = (structures["percolation_1d_eV"].astype(float) < threshold).astype(bool)
    structures = structures.sort_values(STRUCTURE_ORDER, kind="mergesort").reset_index(drop=True)
    failures = failures.reindex(columns=FAILURE_COLUMNS)
    if sort_failures:
        failures = failures.sort_values(FAILURE_ORDER, kind="mergesort")
    failures = failures.reset_index(drop=True)
    return {"hops": hops, "structures": structures, "shortlist": shortlist_table(structures, hops),
            "failures": failures}


def counts_of(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Row counts of the four tables (as ``run.json`` reports them)."""
    hops = tables["hops"]
    return {"hops": len(hops), "hops_predicted": int(hops["predicted_em_eV"].notna().sum()),
            "structures": len(tables["structures"]), "shortlist": len(tables["shortlist"]),
            "failures": len(tables["failures"])}
