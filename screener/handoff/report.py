"""One self-contained HTML page summarising a run: shortlist, barrier distributions, parity.

Figures are drawn with matplotlib's object API (``matplotlib.figure.Figure``, Agg canvas: no
pyplot state, no display needed) and embedded as base64 PNG data URIs, so the page is a single
file that opens anywhere, offline.

Structural family of a material, in order of preference: the bundled catalogue's family (by
material id, else by reduced formula), else the space group recorded in ``structures.parquet``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from screener.handoff.combine import load_combination
from screener.handoff.refined_table import DISAGREEMENT_EV, current_rows
from screener.screening.rundir import load_run
from screener.sources.bundled import load_catalogue

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from screener.screening.rundir import RunData


log = logging.getLogger(__name__)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#f3f3f3}td.t{text-align:left;font-family:ui-monospace,monospace}
tr.flag td{background:#fff3cd}tr.pass td{background:#e8f5e9}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}.meta{font-size:.85em;color:#555}
"""


#: Polyanion-forming elements: with oxygen they name the chemical class (phosphate, silicate...).
_POLYANIONS = {"P": "phosphate", "Si": "silicate", "S": "sulfate", "B": "borate", "Mo": "molybdate",
               "W": "tungstate", "V": "vanadate", "Ge": "germanate"}
_ANIONS = {"O": "oxide", "S": "sulfide", "Se": "selenide", "Te": "telluride", "F": "fluoride",
           "Cl": "chloride", "Br": "bromide", "I": "iodide", "N": "nitride"}


def _spacegroup_number(text: Any) -> int | None:
    """``12`` from a ``"C2/m (12)"`` label; None when there is none."""
    try:
        return int(str(text).rsplit("(", 1)[1].rstrip(") "))
    except (IndexError, ValueError):
        return None


def chemical_class(formula: str) -> str:
    """A chemist's class of a compound from its formula: ``phosphate``, ``oxide``, ``sulfide``..."""
    from pymatgen.core import Composition

    try:
        comp = Composition(formula)
    except Exception:  # noqa: BLE001 - not a formula
        return "unknown"
    els = {e.symbol for e in comp.elements}
    anion = max(comp.elements, key=lambda e: e.X if e.X == e.X else 0.0).symbol
    if anion == "O":
        # the polyanion former with the most oxygen per atom: P in LiFePO4, Si in Mg2SiO4
        for el, name in _POLYANIONS.items():
            if el in els and comp["O"] >= 3 * comp[el]:
                return name
    return _ANIONS.get(anion, f"{anion} compound")


def families(structures: pd.DataFrame) -> pd.Series:
    """Structural family of each row of ``structures`` (index aligned).

    The bundled catalogue's family when the material id or reduced formula is in it; else the
    family of a catalogue host with the same prototype (anonymous formula and space group), e.g.
    ``olivine-type phosphate``; else the anonymous formula and chemical class, e.g. ``ABC2 oxide``.
    """
    from pymatgen.core import Composition

    by_id: dict[str, str] = {}
    by_formula: dict[str, str] = {}
    by_prototype: dict[tuple[str, int], str] = {}
    try:
        for rec in load_catalogue():
            by_id[rec.material_id] = rec.family
            comp = Composition(rec.formula)
            by_formula.setdefault(comp.reduced_formula, rec.family)
            number = rec.structure.get_space_group_info()[1]
            by_prototype.setdefault((comp.anonymized_formula, number), rec.family)
    except Exception as exc:  # noqa: BLE001 - the catalogue is a nicety here
        log.debug("no bundled catalogue for families: %s", exc)

    def one(row: pd.Series) -> str:
        mid = str(row.get("material_id", ""))
        if mid in by_id:
            return by_id[mid]
        formula = str(row.get("formula", ""))
        try:
            comp = Composition(formula)
        except Exception:  # noqa: BLE001
            return "unknown"
        if comp.reduced_formula in by_formula:
            return by_formula[comp.reduced_formula]
        kind = chemical_class(formula)
        proto = by_prototype.get((comp.anonymized_formula, _spacegroup_number(row.get("spacegroup"))))
        if proto:
            return f"{proto}-type {kind}"
        return f"{comp.anonymized_formula} {kind}"

    if not len(structures):
        return pd.Series([], dtype=object)
    return structures.apply(one, axis=1)


def error_bars(values: pd.Series, errors: pd.Series) -> np.ndarray:
    """Asymmetric error bars that stop at 0 eV: ``[[lower...], [upper...]]``."""
    v = values.astype(float).to_numpy()
    e = errors.astype(float).fillna(0).clip(lower=0).to_numpy()
    return np.vstack([np.minimum(e, np.clip(v, 0, None)), e])


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (float, np.floating)):
        if math.isnan(x):
            return "–"
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        return f"{x:.{digits}f}"
    if isinstance(x, (list, tuple, np.ndarray)):
        return ", ".join(str(v) for v in x)
    return str(x)


def html_table(df: pd.DataFrame, columns: list[tuple[str, str]], row_class: pd.Series | None = None,
               table_id: str = "") -> str:
    """An HTML table of ``df`` with ``(column, header)`` pairs; strings are escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in columns)
    body = []
    for i, (_, r) in enumerate(df.iterrows()):
        cls = f' class="{row_class.iloc[i]}"' if row_class is not None and row_class.iloc[i] else ""
        cells = []
        for c, _ in columns:
            v = r.get(c)
            td = '<td class="t">' if isinstance(v, (str, list, np.ndarray)) else "<td>"
            cells.append(f"{td}{html.escape(_fmt(v))}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    tid = f' id="{html.escape(table_id)}"' if table_id else ""
    return f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def fig_to_data_uri(fig: Figure, dpi: int = 110) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _new_fig(w: float = 7.0, h: float = 4.2) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    return fig, fig.add_subplot(1, 1, 1)


def _horizontal() -> dict[str, Any]:
    """Boxplot keyword for horizontal boxes (``orientation`` from matplotlib 3.10, ``vert`` before)."""
    import matplotlib

    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def fig_family_distribution(hops: pd.DataFrame, family: pd.Series, threshold: float | None) -> Figure:
    """Predicted barriers of every hop, one box (plus jittered points) per structural family."""
    fig, ax = _new_fig(7.5, max(3.0, 0.45 * family.nunique() + 1.5))
    h = hops.assign(family=family.reindex(hops.index).fillna("unknown"))
    h = h[np.isfinite(h["predicted_em_eV"].astype(float))]
    order = h.groupby("family")["predicted_em_eV"].median().sort_values().index.tolist()
    data = [h.loc[h["family"] == f, "predicted_em_eV"].to_numpy(float) for f in order]
    if data:
        ax.boxplot(data, widths=0.6, showfliers=False, **_horizontal())
        rng = np.random.default_rng(0)
        for i, d in enumerate(data, start=1):
            ax.scatter(d, i + rng.uniform(-0.18, 0.18, len(d)), s=10, alpha=0.6, color="tab:blue", zorder=3)
        ax.set_yticks(range(1, len(order) + 1), [f"{f} (n={len(d)})" for f, d in zip(order, data)])
    if threshold is not None and math.isfinite(threshold) and data and threshold < 3 * max(max(d) for d in data if len(d)):
        ax.axvline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:g} eV")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("predicted migration barrier Em (eV), every hop and limit")
    ax.set_title("Predicted barriers by structural family")
    return fig


def fig_barrier_vs_length(hops: pd.DataFrame, path_ids: set[str]) -> Figure:
    """Predicted barrier vs hop length, with the model's uncertainty as error bars."""
    fig, ax = _new_fig()
    h = hops[np.isfinite(hops["predicted_em_eV"].astype(float))]
    for limit, marker, color in (("vacancy", "o", "tab:blue"), ("dilute", "s", "tab:orange")):
        d = h[h["limit"] == limit]
        if len(d):
            ax.errorbar(d["length_A"], d["predicted_em_eV"], yerr=error_bars(d["predicted_em_eV"], d["uncertainty_eV"]),
                        fmt=marker, ms=4, color=color, alpha=0.7, elinewidth=0.8, capsize=2, label=limit)
    on = h[h["hop_id"].isin(path_ids)]
    if len(on):
        ax.scatter(on["length_A"], on["predicted_em_eV"], s=80, facecolors="none", edgecolors="k",
                   lw=1, label="on a shortlisted 1D path", zorder=4)
    ax.set_xlabel("hop length (Å)")
    ax.set_ylabel("predicted Em (eV) ± uncertainty")
    ax.set_title("Barrier vs hop length")
    if len(h):
        ax.legend(fontsize=8)
    return fig


def fig_shortlist_uncertainty(short: pd.DataFrame) -> Figure:
    """1D percolation barrier of the shortlisted materials with the path's largest uncertainty."""
    n = len(short)
    fig, ax = _new_fig(7.5, max(2.5, 0.3 * n + 1.2))
    y = np.arange(n)[::-1]
    x = short["percolation_1d_eV"].astype(float).to_numpy()
    err = error_bars(short["percolation_1d_eV"].where(np.isfinite(x), 0.0), short["path_max_uncertainty_eV"])
    ax.barh(y, np.where(np.isfinite(x), x, np.nan), xerr=err, color="tab:green", alpha=0.7, capsize=3)
    ax.set_xlim(left=0)
    labels = [f"{r} {m} ({i})" for r, m, i in zip(short["rank"], short["material_id"], short["working_ion"])]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("1D percolation barrier (eV) ± largest uncertainty on the path")
    ax.set_title(f"Shortlist (top {n})")
    return fig


def fig_parity(refined: pd.DataFrame) -> Figure:
    """Predicted vs MLIP-NEB barriers; unconverged NEBs are hollow.

    The axes span the points (not their error bars), from 0 eV; the model's uncertainty is drawn
    light, stopping at 0 eV, so that wide uncertainties do not hide the points. The grey band of
    each potential is where its NEB agrees with the prediction (``disagreement`` false): within
    :data:`DISAGREEMENT_EV` of it once corrected for the potential's softening, i.e.
    ``scale * (x ± 0.3)``.
    """
    fig, ax = _new_fig(5.5, 5.0)
    r = refined[np.isfinite(refined["neb_em_eV"].astype(float))]
    if len(r):
        lo = 0.0
        hi = float(max(r["predicted_em_eV"].max(), r["neb_em_eV"].max())) * 1.1 + 0.1
        xs = np.array([lo, hi])
        ax.plot(xs, xs, "k-", lw=0.8)
        for scale in sorted({load_combination(str(pot))[0].scale for pot in r["potential"].unique()}):
            ax.fill_between(xs, scale * (xs - DISAGREEMENT_EV), scale * (xs + DISAGREEMENT_EV), color="0.85",
                            alpha=0.6, lw=0, label=f"agrees: {scale:g} × (pred. ± {DISAGREEMENT_EV:g} eV)")
        for pot, d in r.groupby("potential"):
            conv = d["converged"].fillna(False).astype(bool)
            ax.errorbar(d["predicted_em_eV"], d["neb_em_eV"], xerr=error_bars(d["predicted_em_eV"], d["uncertainty_eV"]),
                        fmt="none", ecolor="0.6", elinewidth=0.6, alpha=0.5, capsize=0)
            if conv.any():
                ax.scatter(d.loc[conv, "predicted_em_eV"], d.loc[conv, "neb_em_eV"], s=30, label=f"{pot}")
            if (~conv).any():
                ax.scatter(d.loc[~conv, "predicted_em_eV"], d.loc[~conv, "neb_em_eV"], s=30, facecolors="none",
                           edgecolors="tab:red", label=f"{pot} (not converged)")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.legend(fontsize=8)
    ax.set_xlabel("predicted Em (eV)")
    ax.set_ylabel("NEB Em, ML potential (eV)")
    ax.set_title("Prediction vs ML-potential NEB")
    return fig


def _figure_html(fig: Figure, alt: str, caption: str) -> str:
    uri = fig_to_data_uri(fig)
    return (f'<figure><img alt="{html.escape(alt)}" src="{uri}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def build_report(run: RunData, top: int = 50) -> str:
    """The HTML page of a run (a pure function of its tables).

    Args:
        run: the run's tables (:func:`screener.screening.rundir.load_run`).
        top: shortlist rows shown in the table and the uncertainty figure.

    Returns:
        A complete, self-contained HTML document.
    """
    info = run.info
    structures = run.structures.copy()
    structures["family"] = families(structures)
    fam_by_mat = dict(zip(zip(structures["material_id"], structures["working_ion"]), structures["family"]))
    hops = run.hops.reset_index(drop=True)
    hop_family = pd.Series([fam_by_mat.get((m, i), "unknown") for m, i in zip(hops["material_id"], hops["working_ion"])],
                           index=hops.index)
    short = run.shortlist.sort_values("rank", kind="mergesort").head(top).copy()
    short = short.merge(structures[["material_id", "working_ion", "family"]], how="left",
                        on=["material_id", "working_ion"])
    short["n_path_hops"] = [len(x) if x is not None else 0 for x in short["path_hop_ids"]]
    path_ids = {h for ids in run.shortlist["path_hop_ids"] for h in (ids if ids is not None else [])}
    threshold = (info.get("config") or {}).get("threshold")
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    counts = info.get("counts") or {}

    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>screener report: {html.escape(run.path.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Screening report: {html.escape(', '.join(info.get('chemistry') or []))} in "
        f"{html.escape(str(info.get('source', '')))}</h1>",
        '<p class="meta">'
        f"run <code>{html.escape(str(run.path))}</code> · model {html.escape(str(info.get('model_version', '')))}"
        f" · screener {html.escape(str(info.get('screener_version', '')))}"
        f" · threshold {html.escape(_fmt(threshold, 2))} eV · {counts.get('hosts', '?')} hosts, "
        f"{counts.get('hops', len(hops))} hops, {len(run.shortlist)} shortlisted, "
        f"{counts.get('failures', '?')} failures · generated {generated}</p>",
        "<p>Barriers are the band model's predictions (eV) with its uncertainty; a material is "
        "shortlisted when its 1D percolation barrier (the lowest barrier at which the hops connect "
        "into an infinite 1D path) is below the threshold.</p>",
        f"<h2>Shortlist (top {len(short)} of {len(run.shortlist)})</h2>",
    ]
    if len(short):
        parts.append(html_table(short, [
            ("rank", "rank"), ("material_id", "material"), ("formula", "formula"), ("working_ion", "ion"),
            ("family", "family"), ("spacegroup", "space group"), ("percolation_1d_eV", "1D Em (eV)"),
            ("percolation_2d_eV", "2D Em (eV)"), ("percolation_3d_eV", "3D Em (eV)"),
            ("path_max_uncertainty_eV", "± (eV)"), ("n_path_hops", "path hops"),
        ], table_id="shortlist"))
        parts.append(_figure_html(fig_shortlist_uncertainty(short), "shortlist barriers with uncertainty",
                                  "1D percolation barrier of each shortlisted material; the error bar is the "
                                  "largest model uncertainty among the hops of its path."))
    else:
        parts.append("<p>Nothing passed the threshold.</p>")
    parts.append(f"<h2>Every material ({len(structures)})</h2>")
    if len(structures):
        parts.append("<p>Ranked by 1D percolation barrier, shortlisted or not (highlighted: shortlisted).</p>")
        parts.append(html_table(structures, [
            ("material_id", "material"), ("formula", "formula"), ("working_ion", "ion"), ("family", "family"),
            ("spacegroup", "space group"), ("n_hops", "hops"), ("lowest_hop_em_eV", "lowest hop (eV)"),
            ("percolation_1d_eV", "1D Em (eV)"), ("percolation_2d_eV", "2D Em (eV)"),
            ("percolation_3d_eV", "3D Em (eV)"), ("passes", "shortlisted"),
        ], row_class=structures["passes"].astype(bool).map({True: "pass", False: ""}), table_id="materials"))
    if len(short):
        parts.append(f"<h2>Hops of each shortlisted path (top {len(short)})</h2>")
        parts.append("<p>The hops open at the material's 1D percolation barrier: what a DFT team would "
                     "compute first (<code>screener export</code> writes their NEB inputs).</p>")
        parts.append(html_table(path_hops_table(short, hops), [
            ("rank", "rank"), ("material_id", "material"), ("working_ion", "ion"), ("hop_id", "hop"),
            ("limit", "limit"), ("length_A", "length (Å)"), ("multiplicity", "multiplicity"),
            ("isite_wyckoff", "from"), ("esite_wyckoff", "to"), ("predicted_em_eV", "Em (eV)"),
            ("uncertainty_eV", "± (eV)"),
        ], table_id="path-hops"))
    parts.append("<h2>Barrier distributions</h2>")
    if len(hops):
        parts.append(_figure_html(fig_family_distribution(hops, hop_family, threshold), "barriers by family",
                                  "Predicted barrier of every hop (both limits) by structural family: the bundled "
                                  "catalogue's family where the material is in it, else its space group."))
        parts.append(_figure_html(fig_barrier_vs_length(hops, path_ids), "barrier vs hop length",
                                  "Predicted barrier vs hop length; error bars are the model's uncertainty, circled "
                                  "hops lie on a shortlisted material's 1D path."))
    else:
        parts.append("<p>No hops.</p>")
    ref = current_rows(run.refined, run.path) if run.refined is not None else None  # older rows: today's barrier
    if ref is not None and len(ref):
        ref = ref.sort_values(["material_id", "hop_id", "potential"], kind="mergesort")
        parts.append("<h2>Second opinion: NEB with an ML potential</h2>")
        parts.append("<p>NEB between end points relaxed with a universal ML potential (fixed cell); "
                     "the barrier is the highest minus the lowest image energy. A second opinion beside the "
                     "prediction, not the ranking key. The refined barrier combines the two, weighing each "
                     "by how it errs against DFT (docs/dft_handoff.md). Universal potentials soften "
                     "barriers, so the NEB is compared with the prediction after dividing it by the "
                     "potential's fitted scale (CHGNet 0.8); rows where the two still differ by more than "
                     f"{DISAGREEMENT_EV:g} eV are highlighted.</p>")
        parts.append(_figure_html(fig_parity(ref), "predicted vs NEB parity",
                                  "Predicted barrier (x, ± model uncertainty) vs the ML-potential NEB barrier (y); "
                                  "in the grey band the two agree once the NEB is corrected for softening."))
        parts.append(html_table(ref, [
            ("material_id", "material"), ("working_ion", "ion"), ("limit", "limit"), ("hop_id", "hop"),
            ("potential", "potential"), ("predicted_em_eV", "predicted (eV)"), ("uncertainty_eV", "±"),
            ("neb_em_eV", "NEB (eV)"), ("delta_eV", "NEB − pred."), ("refined_em_eV", "refined (eV)"),
            ("refined_uncertainty_eV", "refined ±"), ("refined_status", "refined from"), ("converged", "converged"),
            ("neb_steps", "steps"), ("seconds", "s"), ("error", "error"),
        ], row_class=ref["disagreement"].fillna(False).astype(bool).map({True: "flag", False: ""}),
            table_id="refined"))
    parts.append("</body></html>")
    return "\n".join(parts)


def path_hops_table(short: pd.DataFrame, hops: pd.DataFrame) -> pd.DataFrame:
    """One row per hop of each shortlisted material's 1D path, by rank then barrier."""
    rows = []
    for _, r in short.iterrows():
        ids = set(r["path_hop_ids"]) if r["path_hop_ids"] is not None else set()
        h = hops[(hops["material_id"] == r["material_id"]) & (hops["working_ion"] == r["working_ion"])
                 & hops["hop_id"].isin(ids)]
        rows.append(h.assign(rank=r["rank"]).sort_values(["predicted_em_eV", "hop_id", "limit"], kind="mergesort"))
    return pd.concat(rows, ignore_index=True) if rows else hops.iloc[0:0].assign(rank=[])


def write_report(run_dir: str | Path, out: str | Path, top: int = 50) -> Path:
    """Build the report of a run directory and write it to ``out`` (an ``.html`` file)."""
    out = Path(out)
    page = build_report(load_run(run_dir), top=top)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
