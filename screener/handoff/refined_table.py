"""The ``refined.parquet`` table of ``screener refine``: its columns; older rows brought up to date.

Its own module so that :mod:`screener.handoff.export` and :mod:`screener.handoff.report`, which
read the table, and :mod:`screener.handoff.refine`, which writes it, share it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from screener.core.band import migration_barrier
from screener.handoff.combine import load_combination, refined_status
from screener.handoff.potentials import canonical_name

log = logging.getLogger(__name__)


#: |NEB / scale - predicted| above which a hop is flagged as a disagreement (eV); ``scale`` is the
#: softening fitted for the potential (:class:`screener.handoff.combine.Combination`).
DISAGREEMENT_EV = 0.3


REFINED_COLUMNS = [
    "material_id", "formula", "working_ion", "limit", "hop_id", "hop_label", "length_A",
    "potential", "potential_version", "neb_em_eV", "neb_em_forward_eV", "neb_em_reverse_eV", "predicted_em_eV",
    "uncertainty_eV", "refined_em_eV", "refined_uncertainty_eV", "refined_status", "neb_weight",
    "delta_eV", "disagreement", "e_initial_eV", "e_final_eV", "e_saddle_eV",
    "initial_max_force_eV_A", "final_max_force_eV_A", "initial_steps", "final_steps",
    "final_from_symmetry", "initial_ion_shift_A", "final_ion_shift_A", "endpoints_converged",
    "neb_max_force_eV_A", "neb_steps", "evaluations", "converged", "n_images", "n_atoms", "fmax_eV_A",
    "seconds", "images_path", "error", "finished_at", "refine_key",
]


def neb_fields(potential: str, predicted: float, uncertainty: float, neb: float) -> tuple[dict[str, Any], str]:
    """The columns that follow from a hop's NEB barrier (NaN: none) and its prediction, and the combination's name.

    Columns: ``delta_eV`` (NEB - predicted), ``disagreement``, ``refined_em_eV``,
    ``refined_uncertainty_eV`` and ``neb_weight``, from the combination fitted for ``potential``
    (:mod:`screener.handoff.combine`). ``disagreement`` compares the prediction with the NEB
    barrier corrected for the potential's softening, ``NEB / scale`` (CHGNet's fit: 0.8), as the
    combination does: with the raw barrier a softened potential would flag high barriers it
    agrees on. On the validation entries (``benchmarks/results/refine_validation.md``) the
    corrected flag separates the combined errors better: CHGNet, 70 of 204 flagged, combined MAE
    0.406 eV flagged / 0.146 unflagged, against 69 and 0.380 / 0.161 with the raw barrier.
    """
    combination, _ = load_combination(potential)
    refined, refined_sd, weight = (float(x[0]) for x in combination.combine(predicted, uncertainty, neb))
    gap = neb / combination.scale - predicted
    return {"delta_eV": neb - predicted,
            "disagreement": bool(abs(gap) > DISAGREEMENT_EV) if math.isfinite(gap) else False,
            "refined_em_eV": refined, "refined_uncertainty_eV": refined_sd, "neb_weight": weight}, combination.name


def _image_energies(row: pd.Series, run_path: Path | None) -> list[float]:
    """A row's NEB image energies: from its images file where it can be read, else its end points and top."""
    if run_path is not None and isinstance(row["images_path"], str) and row["images_path"]:
        try:
            from ase.io import read

            return [float(im.get_potential_energy()) for im in read(run_path / row["images_path"], index=":")]
        except Exception as exc:  # noqa: BLE001 - a missing or unreadable file: the stored energies
            log.debug("%s: %s", row["images_path"], exc)
    return [float(row["e_initial_eV"]), float(row["e_saddle_eV"]), float(row["e_final_eV"])]


#: A ``refined.parquet`` row's identity: one row per hop and potential.
ROW_KEY = ["material_id", "working_ion", "hop_id", "potential"]


def _flag_again(table: pd.DataFrame) -> pd.DataFrame:
    """``disagreement`` of each row with a barrier and a prediction, by today's rule (tables written
    before 2026-12-07 compared the raw barrier, not ``NEB / scale``)."""
    neb = pd.to_numeric(table["neb_em_eV"], errors="coerce")
    pred = pd.to_numeric(table["predicted_em_eV"], errors="coerce")
    rows = table.index[np.isfinite(neb) & np.isfinite(pred)]
    if not len(rows):
        return table
    scales = {p: load_combination(str(p))[0].scale for p in table.loc[rows, "potential"].unique()}
    gap = neb[rows] / table.loc[rows, "potential"].map(scales).astype(float) - pred[rows]
    table = table.copy()
    table["disagreement"] = table["disagreement"].astype(object)
    table.loc[rows, "disagreement"] = (gap.abs() > DISAGREEMENT_EV).to_numpy()
    return table


def current_rows(table: pd.DataFrame, run_path: Path | None = None) -> pd.DataFrame:
    """A ``refined.parquet`` table in today's columns; one written before the barrier was max - min, brought up to date.

    Potentials recorded under an alias (``sevenn``) take the name it stands for (``7net-0``); of
    two rows of one hop and potential, the later one stays. A table without the
    ``neb_em_forward_eV`` column (written before 2026-12-07) holds the forward barrier in
    ``neb_em_eV``. In each of its rows with a barrier, that value moves to
    ``neb_em_forward_eV``; ``neb_em_eV`` is derived again from the images (``run_path`` /
    ``images_path``; else the stored end-point and top energies, exact unless an interior image
    lay below both end points) and the refined barrier and its status are combined again with it.
    A row whose energies cannot be had is left as it was; a failed row without a refined barrier
    (written before the combination) gets the fast prediction, as refine gives one today. The
    ``disagreement`` flag of every row with a barrier follows today's rule.
    """
    old = "neb_em_forward_eV" not in table.columns
    table = table.reindex(columns=REFINED_COLUMNS)
    named = table["potential"].map(canonical_name)
    if not named.equals(table["potential"]):
        table = table.assign(potential=named).drop_duplicates(ROW_KEY, keep="last").reset_index(drop=True)
    table = _flag_again(table)
    if not old:
        return table
    neb = pd.to_numeric(table["neb_em_eV"], errors="coerce")
    stale = table.index[neb.notna()]
    table = table.astype({c: float for c in ("neb_em_forward_eV", "neb_em_reverse_eV")})
    table["refined_status"] = table["refined_status"].astype(object)
    done = 0
    for i in stale:
        row = table.loc[i]
        try:
            e = _image_energies(row, run_path)
            barrier = migration_barrier(e)
            fields, name = neb_fields(str(row["potential"]), float(row["predicted_em_eV"]),
                                      float(row["uncertainty_eV"]), barrier)
        except (TypeError, ValueError) as exc:  # energies or prediction missing: the row as it was
            log.warning("refined row %s/%s: barrier not brought up to date (%s)", row["material_id"], row["hop_id"],
                        exc)
            continue
        converged = row["converged"] if isinstance(row["converged"], (bool, np.bool_)) else None
        fields.update(neb_em_eV=barrier, neb_em_forward_eV=max(e) - e[0], neb_em_reverse_eV=max(e) - e[-1],
                      refined_status=refined_status(barrier, "", converged, name))
        for column, value in fields.items():
            table.loc[i, column] = value
        done += 1
    for i in table.index[neb.isna() & pd.to_numeric(table["refined_em_eV"], errors="coerce").isna()]:
        row = table.loc[i]
        try:
            fields, _ = neb_fields(str(row["potential"]), float(row["predicted_em_eV"]),
                                   float(row["uncertainty_eV"]), math.nan)
        except (TypeError, ValueError):  # no prediction either: nothing to fall back on
            continue
        error = row["error"] if isinstance(row["error"], str) else ""
        fields.update(refined_status=refined_status(math.nan, error))
        for column, value in fields.items():
            table.loc[i, column] = value
    if done:
        log.info("%d refined rows of an earlier screener: barrier now highest minus lowest image, combined again",
                 done)
    return table
