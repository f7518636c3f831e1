"""``screener report``: a self-contained HTML page with the shortlist and embedded figures."""

from __future__ import annotations

import base64
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from screener.cli.main import main
from screener.sources.bundled import catalogue_dir

HOSTS = {"sub/LiFePO4.cif": "LiFePO4.cif"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run on olivine LiFePO4 filed in a sub-folder (material id ``sub/LiFePO4.cif``)."""
    from screener.screening.run import screen

    hosts = tmp_path_factory.mktemp("hosts")
    for rel, name in HOSTS.items():
        (hosts / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(catalogue_dir() / name, hosts / rel)
    out = tmp_path_factory.mktemp("run") / "run"
    res = screen("Li", str(hosts), out=out, synchronous=True, threshold=10.0)
    assert len(res.shortlist) == 1
    return out


class _Page(HTMLParser):
    """Collects images, links, scripts and the cells of each table by id."""

    def __init__(self):
        super().__init__()
        self.imgs: list[dict[str, str]] = []
        self.external: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith("data:"):
                self.external.append(a[key])
        if tag in ("script", "link", "iframe"):
            self.external.append(tag)
        if tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def _check_images(page: _Page) -> None:
    assert page.imgs, "no figure"
    for img in page.imgs:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
        assert img.get("alt")
    assert page.external == []  # self-contained: nothing fetched from elsewhere


def test_report_holds_the_shortlist_and_its_figures(run_dir, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    page = _parse(out)
    _check_images(page)
    assert len(page.imgs) == 3  # shortlist uncertainty, family distribution, barrier vs length
    short = pd.read_parquet(run_dir / "shortlist.parquet")
    rows = page.tables["shortlist"]
    assert rows[0][:2] == ["rank", "material"]
    body = rows[1:]
    assert [r[1] for r in body] == short.sort_values("rank")["material_id"].tolist()
    assert [int(r[0]) for r in body] == sorted(short["rank"].tolist())
    assert body[0][4] == "olivine"  # the catalogue's family, matched by formula
    assert "refined" not in page.tables


def test_report_shows_parity_when_refine_ran(run_dir, tmp_path):
    from screener.handoff.refined_table import REFINED_COLUMNS

    run_copy = tmp_path / "run"
    shutil.copytree(run_dir, run_copy)
    hops = pd.read_parquet(run_copy / "hops.parquet").head(3)
    rows = []
    for k, (_, h) in enumerate(hops.iterrows()):
        r = {c: None for c in REFINED_COLUMNS}
        neb = float(h["predicted_em_eV"]) + (0.5 if k == 0 else 0.05)
        r.update(material_id=h["material_id"], working_ion="Li", hop_id=h["hop_id"], limit=h["limit"],
                 potential="chgnet", predicted_em_eV=h["predicted_em_eV"], uncertainty_eV=h["uncertainty_eV"],
                 neb_em_eV=neb, delta_eV=neb - h["predicted_em_eV"], disagreement=k == 0, converged=k != 2,
                 neb_steps=50, seconds=30.0, error="", neb_em_forward_eV=neb, refined_em_eV=0.1 * (k + 1),
                 refined_uncertainty_eV=0.05, refined_status="combined (chgnet)")
        rows.append(r)
    pd.DataFrame(rows, columns=REFINED_COLUMNS).to_parquet(run_copy / "refined.parquet")
    out = tmp_path / "sub" / "report.html"
    assert main(["report", str(run_copy), "--out", str(out), "--top", "1"]) == 0
    page = _parse(out)
    _check_images(page)
    assert len(page.imgs) == 4
    assert any("parity" in i["alt"] for i in page.imgs)
    assert len(page.tables["shortlist"]) == 2  # header + the one row asked for
    assert {r[3] for r in page.tables["refined"][1:]} == set(hops["hop_id"])
    assert out.read_text().count('class="flag"') == 1  # the disagreeing hop is highlighted
    # the combined barrier is shown beside the two opinions
    header = page.tables["refined"][0]
    assert "refined (eV)" in header and "refined from" in header
    col = header.index("refined (eV)")
    assert sorted(float(r[col]) for r in page.tables["refined"][1:]) == pytest.approx([0.1, 0.2, 0.3])


def test_report_of_a_missing_run_is_a_usage_error(tmp_path):
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")]) == 2


def test_family_labels_of_user_files_name_the_prototype_or_the_chemistry():
    from screener.handoff.report import families

    s = pd.DataFrame({"material_id": ["bundled-licoo2", "x.cif", "y.cif", "z.cif", "w.cif"],
                      "formula": ["LiCoO2", "LiFePO4", "NaFePO4", "NaNiO2", "Li3N"],
                      "spacegroup": ["R-3m (166)", "Pnma (62)", "Pnma (62)", "R-3m (166)", "P6/mmm (191)"]})
    assert families(s).tolist() == ["layered", "olivine", "olivine-type phosphate", "layered-type oxide",
                                    "AB3 nitride"]


def test_error_bars_stop_at_zero():
    from screener.handoff.report import error_bars

    bars = error_bars(pd.Series([0.1, 0.5, -0.0]), pd.Series([0.3, 0.2, float("nan")]))
    assert bars.tolist() == [[0.1, 0.2, 0.0], [0.3, 0.2, 0.0]]


def test_report_lists_every_material_and_the_hops_of_each_shortlisted_path(run_dir, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    page = _parse(out)
    structures = pd.read_parquet(run_dir / "structures.parquet")
    materials = page.tables["materials"]
    assert materials[0][:2] == ["material", "formula"]
    assert [r[0] for r in materials[1:]] == structures["material_id"].tolist()
    short = pd.read_parquet(run_dir / "shortlist.parquet")
    hop_rows = page.tables["path-hops"][1:]
    assert {r[3] for r in hop_rows} == set(short["path_hop_ids"].iloc[0])
    assert all(r[1] == "sub/LiFePO4.cif" for r in hop_rows)
