"""Write the bundled catalogue of intercalation hosts: one CIF per host plus ``catalogue.json``.

Every host is built from its crystallographic facts (space group, lattice parameters and the
Wyckoff coordinates of the asymmetric unit) with ``Structure.from_spacegroup``; nothing is
downloaded. Each entry carries a literature reference. Where the real material is disordered or
a coordinate is not taken verbatim from the cited refinement, the entry's ``note`` says what
model was used (it is written into the CIF header too).

Run from anywhere::

    python data/hosts/_build_catalogue.py

Space-group symbols given to pymatgen use its "universal" form where the origin choice matters
(``Fd-3m:2``, ``Pmmn:2`` = origin at the inversion centre; ``I41/amd:1`` = origin at -4m2;
``R-3m:H`` = hexagonal axes). The declared symbol and number in ``catalogue.json`` are the
standard short ones.

The numbers were written from the cited literature without access to a structure database
(no network); lattice parameters are good to about 0.01 A. Every CIF is checked by
``tests/test_hosts.py`` (space group, formula, charge balance, no contact under 1.5 A).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

HERE = Path(__file__).resolve().parent

Coord = tuple[float, float, float]


@dataclass(frozen=True)
class Host:
    """Crystallographic facts of one host.

    Attributes:
        slug: file stem, also the id suffix (``bundled-<slug>``).
        formula: reduced formula of the ordered model.
        working_ions: the mobile ions this host is screened for.
        family: structural family.
        setting: space-group symbol as pymatgen's ``from_spacegroup`` takes it.
        spacegroup: standard short Hermann-Mauguin symbol.
        number: international space-group number.
        cell: a, b, c (Å), alpha, beta, gamma (degrees).
        sites: (element, fractional coordinates) for the asymmetric unit.
        reference: literature source of the data.
        note: model choices (ordering, transferred coordinates ...), empty when none.
        insertion_ions: for an empty framework (no working ion on its sites), the ions it is
            screened for with ``--sites voids`` (inserted at its voids).
    """

    slug: str
    formula: str
    working_ions: tuple[str, ...]
    family: str
    setting: str
    spacegroup: str
    number: int
    cell: tuple[float, float, float, float, float, float]
    sites: tuple[tuple[str, Coord], ...]
    reference: str
    note: str = ""
    insertion_ions: tuple[str, ...] = ()


def cubic(a: float) -> tuple[float, float, float, float, float, float]:
    """Cell tuple of a cubic lattice."""
    return (a, a, a, 90.0, 90.0, 90.0)


def tetragonal(a: float, c: float) -> tuple[float, float, float, float, float, float]:
    """Cell tuple of a tetragonal lattice."""
    return (a, a, c, 90.0, 90.0, 90.0)


def hexagonal(a: float, c: float) -> tuple[float, float, float, float, float, float]:
    """Cell tuple of a hexagonal (or rhombohedral-in-hexagonal-axes) lattice."""
    return (a, a, c, 90.0, 90.0, 120.0)


def ortho(a: float, b: float, c: float) -> tuple[float, float, float, float, float, float]:
    """Cell tuple of an orthorhombic lattice."""
    return (a, b, c, 90.0, 90.0, 90.0)


# --------------------------------------------------------------------------------------------
# Normal spinels AB2X4, Fd-3m origin choice 2: A 8a (1/8,1/8,1/8), B 16d (1/2,1/2,1/2),
# X 32e (x,x,x).
# --------------------------------------------------------------------------------------------


def spinel(
    slug: str,
    a_ion: str,
    b_ion: str,
    anion: str,
    a: float,
    x: float,
    ions: tuple[str, ...],
    reference: str,
    note: str = "",
) -> Host:
    """A normal cubic spinel."""
    return Host(
        slug=slug,
        formula=f"{a_ion}{b_ion}2{anion}4",
        working_ions=ions,
        family="spinel",
        setting="Fd-3m:2",
        spacegroup="Fd-3m",
        number=227,
        cell=cubic(a),
        sites=((a_ion, (0.125, 0.125, 0.125)), (b_ion, (0.5, 0.5, 0.5)), (anion, (x, x, x))),
        reference=reference,
        note=note,
    )


def tetragonal_spinel(
    slug: str,
    a_ion: str,
    b_ion: str,
    a: float,
    c: float,
    ions: tuple[str, ...],
    reference: str,
    note: str = "",
) -> Host:
    """A Jahn-Teller distorted (hausmannite-type) spinel, I4_1/amd origin choice 1.

    A 4a (0,0,0), B 8d (0,1/4,5/8), O 16h (0, 0.214, 0.384): the hausmannite Mn3O4 coordinates
    of Satomi K., J. Phys. Soc. Jpn. 16, 258 (1961), used for the isotypic hosts.
    """
    hausmannite = "O (0, 0.214, 0.384) from hausmannite Mn3O4 (Satomi 1961), isotypic"
    return Host(
        slug=slug,
        formula=f"{a_ion}{b_ion}2O4",
        working_ions=ions,
        family="spinel",
        setting="I41/amd:1",
        spacegroup="I4_1/amd",
        number=141,
        cell=tetragonal(a, c),
        sites=((a_ion, (0.0, 0.0, 0.0)), (b_ion, (0.0, 0.25, 0.625)), ("O", (0.0, 0.214, 0.384))),
        reference=reference,
        note=f"{note}; {hausmannite}" if note else hausmannite,
    )


def layer_z(a: float, c: float, bond: float) -> float:
    """z of X (6c) in an O3 layered AMX2 with M at 3a, from the M-X bond length."""
    in_plane = a / math.sqrt(3.0)
    return 1.0 / 3.0 - math.sqrt(bond**2 - in_plane**2) / c


def layered(
    slug: str,
    ion: str,
    metal: str,
    anion: str,
    a: float,
    c: float,
    reference: str,
    z: float | None = None,
    bond: float | None = None,
    note: str = "",
) -> Host:
    """An O3 (alpha-NaFeO2-type) layered AMX2, R-3m hexagonal axes: M 3a, A 3b, X 6c (0,0,z).

    Either ``z`` (refined value) or ``bond`` (the reported M-X distance, from which z follows
    exactly given a and c) must be given.
    """
    if z is None:
        if bond is None:
            raise ValueError(f"{slug}: give z or bond")
        z = round(layer_z(a, c, bond), 5)
        extra = f"z(X) = {z} from the reported M-X distance {bond} A"
        note = f"{note}; {extra}" if note else extra
    return Host(
        slug=slug,
        formula=f"{ion}{metal}{anion}2",
        working_ions=(ion,),
        family="layered",
        setting="R-3m:H",
        spacegroup="R-3m",
        number=166,
        cell=hexagonal(a, c),
        sites=((metal, (0.0, 0.0, 0.0)), (ion, (0.0, 0.0, 0.5)), (anion, (0.0, 0.0, z))),
        reference=reference,
        note=note,
    )


def o1_layered(
    slug: str,
    ion: str,
    metal: str,
    anion: str,
    a: float,
    c: float,
    bond: float,
    reference: str,
    note: str = "",
) -> Host:
    """An O1 (CdI2-type) intercalated dichalcogenide AMX2, P-3m1: M 1a, A 1b, X 2d (1/3,2/3,z)."""
    in_plane = a / math.sqrt(3.0)
    z = round(math.sqrt(bond**2 - in_plane**2) / c, 5)
    extra = f"z(X) = {z} from the reported M-X distance {bond} A"
    return Host(
        slug=slug,
        formula=f"{ion}{metal}{anion}2",
        working_ions=(ion,),
        family="layered",
        setting="P-3m1",
        spacegroup="P-3m1",
        number=164,
        cell=hexagonal(a, c),
        sites=((metal, (0.0, 0.0, 0.0)), (ion, (0.0, 0.0, 0.5)), (anion, (1 / 3, 2 / 3, z))),
        reference=reference,
        note=f"{note}; {extra}" if note else extra,
    )


def monoclinic_layered(
    slug: str,
    ion: str,
    cell: tuple[float, float, float, float],
    o_xz: tuple[float, float],
    reference: str,
    note: str = "",
) -> Host:
    """A Jahn-Teller distorted O'3 layered AMnO2, C2/m: A 2d (0,1/2,1/2), Mn 2a, O 4i (x,0,z)."""
    a, b, c, beta = cell
    return Host(
        slug=slug,
        formula=f"{ion}MnO2",
        working_ions=(ion,),
        family="layered",
        setting="C2/m",
        spacegroup="C2/m",
        number=12,
        cell=(a, b, c, 90.0, beta, 90.0),
        sites=((ion, (0.0, 0.5, 0.5)), ("Mn", (0.0, 0.0, 0.0)), ("O", (o_xz[0], 0.0, o_xz[1]))),
        reference=reference,
        note=note,
    )


def olivine(
    slug: str,
    m1: str,
    m2: str,
    t: str,
    cell: tuple[float, float, float],
    m2_xz: tuple[float, float],
    t_xz: tuple[float, float],
    o1_xz: tuple[float, float],
    o2_xz: tuple[float, float],
    o3: Coord,
    ions: tuple[str, ...],
    reference: str,
    note: str = "",
) -> Host:
    """An olivine M1 M2 T O4 in Pnma: M1 4a (0,0,0), M2/T/O1/O2 4c (x,1/4,z), O3 8d."""
    formula = f"{m1}{m2}{t}O4" if m1 != m2 else f"{m1}2{t}O4"
    return Host(
        slug=slug,
        formula=formula,
        working_ions=ions,
        family="olivine",
        setting="Pnma",
        spacegroup="Pnma",
        number=62,
        cell=ortho(*cell),
        sites=(
            (m1, (0.0, 0.0, 0.0)),
            (m2, (m2_xz[0], 0.25, m2_xz[1])),
            (t, (t_xz[0], 0.25, t_xz[1])),
            ("O", (o1_xz[0], 0.25, o1_xz[1])),
            ("O", (o2_xz[0], 0.25, o2_xz[1])),
            ("O", o3),
        ),
        reference=reference,
        note=note,
    )


def perovskite(slug: str, a_ion: str, b_ion: str, anion: str, a: float, reference: str) -> Host:
    """An ideal cubic perovskite ABX3, Pm-3m: A 1b, B 1a, X 3d."""
    return Host(
        slug=slug,
        formula=f"{a_ion}{b_ion}{anion}3",
        working_ions=(a_ion,),
        family="perovskite",
        setting="Pm-3m",
        spacegroup="Pm-3m",
        number=221,
        cell=cubic(a),
        sites=((a_ion, (0.5, 0.5, 0.5)), (b_ion, (0.0, 0.0, 0.0)), (anion, (0.5, 0.0, 0.0))),
        reference=reference,
    )


LIU_2015 = (
    "Liu M., Rong Z., Malik R., Canepa P., Jain A., Ceder G., Persson K.A., "
    "Energy Environ. Sci. 8, 964 (2015) (spinel multivalent hosts)"
)
ONEILL_1994 = "O'Neill H.St.C., Dollase W.A., Phys. Chem. Minerals 20, 541 (1994)"
KNOX_1961 = "Knox K., Acta Cryst. 14, 583 (1961) (perovskite-like fluorides KMF3)"
LFP = "LiFePO4 (Streltsov V.A. et al., Acta Cryst. B49, 147 (1993))"
LFP_COORDS = dict(  # LiFePO4, Streltsov et al. (1993)
    m2_xz=(0.28222, 0.97472),
    t_xz=(0.09486, 0.41820),
    o1_xz=(0.09678, 0.74279),
    o2_xz=(0.45710, 0.20602),
    o3=(0.16558, 0.04646, 0.28480),
)
TYPICAL_X = "x(O) is a typical refined value for this spinel (+-0.002), not a single refinement"
# CaFe2O4 type (Pnma, all atoms 4c (x,1/4,z)): Ca, M1, M2, O1..O4.
CAFE2O4_XZ = (
    (0.2412, 0.3419),
    (0.0672, 0.1041),
    (0.0850, 0.6112),
    (0.2921, 0.6642),
    (0.3823, 0.9833),
    (0.4761, 0.2189),
    (0.0767, 0.9269),
)


def calcium_ferrite(slug: str, metal: str, cell: tuple[float, float, float], reference: str,
                    note: str = "") -> Host:
    """A CaFe2O4-type (post-spinel) CaM2O4 in Pnma with the CaFe2O4 coordinates."""
    species = ("Ca", metal, metal, "O", "O", "O", "O")
    return Host(
        slug=slug,
        formula=f"Ca{metal}2O4",
        working_ions=("Ca",),
        family="post-spinel",
        setting="Pnma",
        spacegroup="Pnma",
        number=62,
        cell=ortho(*cell),
        sites=tuple((el, (x, 0.25, z)) for el, (x, z) in zip(species, CAFE2O4_XZ)),
        reference=reference,
        note=note,
    )


def alpha_prime_vanadate(slug: str, ion: str, cell: tuple[float, float, float], reference: str,
                         note: str) -> Host:
    """An alpha'-NaV2O5-type AV2O5 (V2O5 layers, A between them), Pmmn origin choice 2."""
    return Host(
        slug=slug,
        formula=f"{ion}V2O5",
        working_ions=(ion,),
        family="vanadate",
        setting="Pmmn:2",
        spacegroup="Pmmn",
        number=59,
        cell=ortho(*cell),
        sites=(
            (ion, (0.25, 0.75, 0.8592)),
            ("V", (0.40212, 0.25, 0.39219)),
            ("O", (0.38732, 0.25, 0.05802)),  # apical (vanadyl) O
            ("O", (0.57317, 0.25, 0.48820)),  # ladder-leg O
            ("O", (0.25, 0.25, 0.52246)),  # rung O
        ),
        reference=reference,
        note=note,
    )


#: Free coordinates of the NASICON model: z(M), x(P), O1 (x, y, z), O2 (x, y, z).
NAZR2P3O12_XYZ = (0.14583, 0.2895, 0.1751, -0.0265, 0.1925, 0.1899, 0.1700, 0.0869)


def nasicon(slug: str, ion: str, metal: str, cell: tuple[float, float], reference: str,
            note: str = "", xyz: tuple[float, ...] = NAZR2P3O12_XYZ) -> Host:
    """A rhombohedral NASICON A M2(PO4)3, R-3c hexagonal axes, A on the M1 site 6b."""
    zm, xp, o1x, o1y, o1z, o2x, o2y, o2z = xyz
    return Host(
        slug=slug,
        formula=f"{ion}{metal}2(PO4)3",
        working_ions=(ion,),
        family="nasicon",
        setting="R-3c:H",
        spacegroup="R-3c",
        number=167,
        cell=hexagonal(*cell),
        sites=(
            (ion, (0.0, 0.0, 0.0)),
            (metal, (0.0, 0.0, zm)),
            ("P", (xp, 0.0, 0.25)),
            ("O", (o1x, o1y, o1z)),
            ("O", (o2x, o2y, o2z)),
        ),
        reference=reference,
        note=note,
    )


NASICON_NOTE = (
    "lattice parameters as cited; atomic coordinates from the NaZr2(PO4)3 model of this "
    "catalogue (Hagman & Kierkegaard 1968), adjusted by distance least squares to Ti-O 1.95 A "
    "and P-O 1.53 A"
)


NAV2O5_NOTE = (
    "x of the ladder-leg O set to give the reported V-O distances 1.915 A (x2) and 1.99 A; "
    "the other coordinates as refined for alpha'-NaV2O5"
)

HOSTS: list[Host] = [
    # ---------------------------------------------------------------- cubic spinels
    spinel("LiMn2O4", "Li", "Mn", "O", 8.2476, 0.2631, ("Li",),
           "Thackeray M.M., David W.I.F., Bruce P.G., Goodenough J.B., "
           "Mater. Res. Bull. 18, 461 (1983)", note=TYPICAL_X),
    spinel("LiTi2O4", "Li", "Ti", "O", 8.4050, 0.2628, ("Li",),
           "Cava R.J., Murphy D.W., Zahurak S., Santoro A., Roth R.S., "
           "J. Solid State Chem. 53, 64 (1984)", note=TYPICAL_X),
    spinel("LiV2O4", "Li", "V", "O", 8.2403, 0.2612, ("Li",),
           "Kondo S. et al., Phys. Rev. Lett. 78, 3729 (1997)", note=TYPICAL_X),
    spinel("MgCr2O4", "Mg", "Cr", "O", 8.3329, 0.2612, ("Mg",), f"{ONEILL_1994}; {LIU_2015}"),
    spinel("MgV2O4", "Mg", "V", "O", 8.4200, 0.2600, ("Mg",), LIU_2015,
           note="a and x(O) typical literature values for MgV2O4"),
    spinel("MgTi2S4", "Mg", "Ti", "S", 10.2200, 0.2590, ("Mg",),
           "Sun X., Bonnick P., Duffort V., Liu M., Rong Z., Persson K.A., Ceder G., "
           "Nazar L.F., Energy Environ. Sci. 9, 2273 (2016)",
           note="a and x(S) approximate (typical thiospinel x), not the refined values"),
    spinel("MgCo2O4", "Mg", "Co", "O", 8.1070, 0.2620, ("Mg",),
           "Okamoto S., Ichitsubo T., Kawaguchi T., Kumagai Y., Oba F., Yagi S., Shimokawa K., "
           f"Goto N., Doi T., Matsubara E., Adv. Sci. 2, 1500072 (2015); {LIU_2015}",
           note="fully normal model (real samples are partly inverse); a and x(O) typical "
           "literature values"),
    spinel("ZnCr2O4", "Zn", "Cr", "O", 8.3275, 0.2616, ("Zn",), f"{ONEILL_1994}; {LIU_2015}"),
    spinel("ZnV2O4", "Zn", "V", "O", 8.4028, 0.2604, ("Zn",),
           f"Reehuis M. et al., Eur. Phys. J. B 35, 311 (2003); {LIU_2015}", note=TYPICAL_X),
    spinel("ZnCo2O4", "Zn", "Co", "O", 8.0946, 0.2636, ("Zn",), LIU_2015,
           note="a and x(O) typical literature values for ZnCo2O4"),
    spinel("ZnFe2O4", "Zn", "Fe", "O", 8.4411, 0.2605, ("Zn",),
           f"O'Neill H.St.C., Eur. J. Mineral. 4, 571 (1992); {LIU_2015}",
           note="fully normal cation distribution (real samples show slight inversion)"),
    # ---------------------------------------------------------------- tetragonal spinels
    tetragonal_spinel("MgMn2O4", "Mg", "Mn", 5.7267, 9.2842, ("Mg",),
                      "Malavasi L., Ghigna P., Chiodelli G., Maggi G., Flor G., "
                      f"J. Solid State Chem. 166, 171 (2002); {LIU_2015}",
                      note="fully normal Mg/Mn distribution (real samples: inversion ~0.1)"),
    tetragonal_spinel("ZnMn2O4", "Zn", "Mn", 5.7204, 9.2450, ("Zn",),
                      "Asbrink S., Waskowska A., Gerward L., Staun Olsen J., Talik E., "
                      "Phys. Rev. B 60, 12651 (1999) (hetaerolite-type ZnMn2O4)"),
    # ---------------------------------------------------------------- olivines
    olivine("LiFePO4", "Li", "Fe", "P", (10.3320, 6.0100, 4.6920), **LFP_COORDS,
            ions=("Li",), reference="Streltsov V.A., Belokoneva E.L., Tsirelson V.G., "
            "Hansen N.K., Acta Cryst. B49, 147 (1993)"),
    olivine("LiMnPO4", "Li", "Mn", "P", (10.4460, 6.1030, 4.7440), **LFP_COORDS,
            ions=("Li",), reference="Geller S., Durand J.L., Acta Cryst. 13, 325 (1960)",
            note=f"atomic coordinates as in isostructural {LFP}"),
    olivine("LiCoPO4", "Li", "Co", "P", (10.2001, 5.9199, 4.6994), **LFP_COORDS,
            ions=("Li",), reference="Kubel F., Z. Kristallogr. 209, 755 (1994)",
            note=f"atomic coordinates as in isostructural {LFP}"),
    olivine("Mg2SiO4", "Mg", "Mg", "Si", (10.20141, 5.98348, 4.75534),
            m2_xz=(0.2772, 0.9914), t_xz=(0.0937, 0.4260), o1_xz=(0.0909, 0.7627),
            o2_xz=(0.4494, 0.2204), o3=(0.1615, 0.0366, 0.2782), ions=("Mg",),
            reference="Yamazaki S., Toraya H., J. Appl. Cryst. 32, 51 (1999) (synthetic "
            "forsterite)"),
    olivine("CaMgSiO4", "Mg", "Ca", "Si", (11.1791, 6.3696, 4.7976),
            m2_xz=(0.2750, 0.9786), t_xz=(0.0790, 0.4097), o1_xz=(0.0763, 0.7453),
            o2_xz=(0.4490, 0.2506), o3=(0.1442, 0.0460, 0.2710), ions=("Ca",),
            reference="Caracas R., Bobocioiu E., Am. Mineral. 96, 437 (2011) (WURM database, "
            "DFT-relaxed monticellite)",
            note="Ca on the olivine M2 site, Mg on M1; computed (LDA) cell and coordinates, "
            "Pbnm data transformed to Pnma"),
    # ---------------------------------------------------------------- layered
    layered("LiCoO2", "Li", "Co", "O", 2.8156, 14.0542,
            "Akimoto J., Gotoh Y., Oosawa Y., J. Solid State Chem. 141, 298 (1998)",
            z=0.26040),
    layered("LiNiO2", "Li", "Ni", "O", 2.8783, 14.1952,
            "Ohzuku T., Ueda A., Nagayama M., J. Electrochem. Soc. 140, 1862 (1993)",
            bond=1.97, note="ideal ordered model, no Ni on the Li layer"),
    layered("LiCrO2", "Li", "Cr", "O", 2.8990, 14.4100,
            "Komaba S., Takei C., Nakayama T., Ogata A., Yabuuchi N., "
            "Electrochem. Commun. 12, 355 (2010)", bond=1.99),
    layered("NaCoO2", "Na", "Co", "O", 2.8890, 15.6010,
            "Delmas C., Fouassier C., Hagenmuller P., Physica B+C 99, 81 (1980)",
            bond=1.92, note="O3 polymorph"),
    layered("NaCrO2", "Na", "Cr", "O", 2.9746, 15.9630,
            "Komaba S., Takei C., Nakayama T., Ogata A., Yabuuchi N., "
            "Electrochem. Commun. 12, 355 (2010)", bond=1.99),
    layered("NaFeO2", "Na", "Fe", "O", 3.0223, 16.0930,
            "Takeda Y., Nakahara K., Nishijima M., Imanishi N., Yamamoto O., Takano M., "
            "Kanno R., Mater. Res. Bull. 29, 659 (1994) (alpha-NaFeO2)", bond=2.02),
    o1_layered("LiTiS2", "Li", "Ti", "S", 3.4590, 6.1890, 2.46,
               "Whittingham M.S., Science 192, 1126 (1976); Dahn J.R., McKinnon W.R., "
               "Haering R.R., Buyers W.J.L., Powell B.M., Can. J. Phys. 58, 207 (1980)"),
    o1_layered("LiVS2", "Li", "V", "S", 3.3800, 6.1300, 2.44,
               "Murphy D.W., Cros C., DiSalvo F.J., Waszczak J.V., Inorg. Chem. 16, 3027 "
               "(1977)"),
    monoclinic_layered("LiMnO2", "Li", (5.4387, 2.80857, 5.3878, 116.006), (0.2723, 0.7706),
                       "Armstrong A.R., Bruce P.G., Nature 381, 499 (1996) (layered "
                       "monoclinic LiMnO2)",
                       note="O (x,z) approximate (Mn-O 4 x 1.92 + 2 x 2.31 A)"),
    monoclinic_layered("NaMnO2", "Na", (5.6300, 2.8600, 5.7700, 112.90), (0.2925, 0.8025),
                       "Parant J.-P., Olazcuaga R., Devalette M., Fouassier C., Hagenmuller P., "
                       "J. Solid State Chem. 3, 1 (1971) (alpha-NaMnO2)",
                       note="O (x,z) approximate (Mn-O 4 x 1.92 + 2 x 2.34 A)"),
    # ---------------------------------------------------------------- perovskite-type (K)
    perovskite("KMnF3", "K", "Mn", "F", 4.1900, KNOX_1961),
    perovskite("KFeF3", "K", "Fe", "F", 4.1210, KNOX_1961),
    perovskite("KCoF3", "K", "Co", "F", 4.0710, KNOX_1961),
    perovskite("KNiF3", "K", "Ni", "F", 4.0120, KNOX_1961),
    perovskite("KZnF3", "K", "Zn", "F", 4.0550, KNOX_1961),
    Host(
        slug="K2NiF4",
        formula="K2NiF4",
        working_ions=("K",),
        family="perovskite",
        setting="I4/mmm",
        spacegroup="I4/mmm",
        number=139,
        cell=tetragonal(4.0060, 13.0760),
        sites=(
            ("K", (0.0, 0.0, 0.352)),
            ("Ni", (0.0, 0.0, 0.0)),
            ("F", (0.0, 0.5, 0.0)),
            ("F", (0.0, 0.0, 0.151)),
        ),
        reference="Balz D., Plieth K., Z. Elektrochem. 59, 545 (1955) (K2NiF4 type)",
        note="Ruddlesden-Popper n = 1 layered perovskite",
    ),
    # ---------------------------------------------------------------- hollandite
    Host(
        slug="K2Mn8O16",
        formula="K2Mn8O16",
        working_ions=("K",),
        family="hollandite",
        setting="I4/m",
        spacegroup="I4/m",
        number=87,
        cell=tetragonal(9.8660, 2.8720),
        sites=(
            ("K", (0.0, 0.0, 0.5)),
            ("Mn", (0.3479, 0.1667, 0.0)),
            ("O", (0.1541, 0.2024, 0.0)),
            ("O", (0.5423, 0.1648, 0.0)),
        ),
        reference="Post J.E., Von Dreele R.B., Buseck P.R., Acta Cryst. B38, 1056 (1982) "
        "(cryptomelane)",
        note="ordered model with the tunnel site 2b fully occupied by K (real: K~1.3 per "
        "cell, disordered)",
    ),
    # ---------------------------------------------------------------- NASICON
    nasicon("NaZr2P3O12", "Na", "Zr", (8.8043, 22.7585),
            "Hagman L.-O., Kierkegaard P., Acta Chem. Scand. 22, 1822 (1968)",
            note="O coordinates approximate: Zr-O 1.98/2.08 A and P-O 1.56/1.60 A against the "
            "refined ~2.05 and ~1.52 A"),
    nasicon("NaTi2P3O12", "Na", "Ti", (8.4920, 21.7800),
            "Delmas C., Nadiri A., Soubeyroux J.L., Solid State Ionics 28-30, 419 (1988)",
            note=NASICON_NOTE,
            xyz=(0.1471, 0.2852, 0.1832, -0.0348, 0.1891, 0.1860, 0.1788, 0.0928)),
    nasicon("LiTi2P3O12", "Li", "Ti", (8.5110, 20.8400),
            "Aono H., Sugimoto E., Sadaoka Y., Imanaka N., Adachi G., J. Electrochem. Soc. 137, "
            "1023 (1990)", note=NASICON_NOTE,
            xyz=(0.1394, 0.2936, 0.1749, -0.0289, 0.1911, 0.1830, 0.1667, 0.0792)),
    # ---------------------------------------------------------------- Chevrel
    Host(
        slug="MgMo6S8",
        formula="MgMo6S8",
        working_ions=("Mg",),
        family="chevrel",
        setting="R-3:H",
        spacegroup="R-3",
        number=148,
        cell=hexagonal(9.1900, 10.8800),
        sites=(
            ("Mg", (0.0, 0.0, 0.0)),
            ("Mo", (0.0172, 0.1686, 0.3995)),
            ("S", (0.0, 0.0, 0.2164)),
            ("S", (0.3169, 0.2933, 0.4117)),
        ),
        reference="Chevrel R., Sergent M., Prigent J., J. Solid State Chem. 3, 515 (1971); "
        "Levi E., Gofer Y., Aurbach D., Chem. Mater. 22, 860 (2010)",
        note="Mo6S8 lattice and coordinates (approximate: Mo-Mo 2.56-2.64 A, Mo-S 2.40-2.48 A); "
        "one Mg per cavity at its centre (3a), the site of first-principles NEB models of Mg "
        "in Mo6S8 (real Mg sits disordered on the rings around it)",
    ),
    # ---------------------------------------------------------------- V2O5-derived (see FRAMEWORKS)
    alpha_prime_vanadate("NaV2O5", "Na", (11.3180, 3.6110, 4.7970),
                         "von Schnering H.G. et al., Z. Kristallogr. NCS 213, 246 (1998) "
                         "(alpha'-NaV2O5)", note=NAV2O5_NOTE),
    alpha_prime_vanadate("CaV2O5", "Ca", (11.3500, 3.6040, 4.8930),
                         "Onoda M., Nishiguchi N., J. Solid State Chem. 127, 359 (1996)",
                         note="atomic coordinates as in the isostructural alpha'-NaV2O5 "
                         f"model ({NAV2O5_NOTE})"),
    # ---------------------------------------------------------------- post-spinel
    calcium_ferrite("CaFe2O4", "Fe", (9.2300, 3.0240, 10.7050),
                    "Decker B.F., Kasper J.S., Acta Cryst. 10, 332 (1957) (Pnam data in the "
                    "Pnma setting)"),
    calcium_ferrite("CaV2O4", "V", (9.2064, 3.0090, 10.6741),
                    "Niazi A. et al., Phys. Rev. B 79, 104432 (2009)",
                    note="atomic coordinates as in the isostructural CaFe2O4 (Decker & Kasper "
                    "1957)"),
]


# --------------------------------------------------------------------------------------------
# Empty frameworks: hosts without the working ion, screened only with --sites voids (the ion is
# inserted at their voids). The charged cathodes a battery chemist tries first.
# --------------------------------------------------------------------------------------------
FRAMEWORKS: list[Host] = [
    Host(
        slug="MnO2-lambda", formula="MnO2", working_ions=(), family="spinel", setting="Fd-3m:2",
        spacegroup="Fd-3m", number=227, cell=cubic(8.0290),
        sites=(("Mn", (0.5, 0.5, 0.5)), ("O", (0.2628, 0.2628, 0.2628))),
        reference="Hunter J.C., J. Solid State Chem. 39, 142 (1981) (lambda-MnO2 from LiMn2O4)",
        note=f"{TYPICAL_X}; the empty 8a (tetrahedral) and 16c (octahedral) sites are the voids",
        insertion_ions=("Mg", "Zn", "Ca", "Li"),
    ),
    Host(
        slug="TiS2", formula="TiS2", working_ions=(), family="layered", setting="P-3m1",
        spacegroup="P-3m1", number=164, cell=hexagonal(3.4073, 5.6953),
        sites=(("Ti", (0.0, 0.0, 0.0)), ("S", (1 / 3, 2 / 3, 0.2501))),
        reference="Chianelli R.R., Scanlon J.C., Thompson A.H., Mater. Res. Bull. 10, 1379 (1975)",
        insertion_ions=("Li", "Na", "Mg"),
    ),
    Host(
        slug="MoS2-2H", formula="MoS2", working_ions=(), family="layered", setting="P6_3/mmc",
        spacegroup="P6_3/mmc", number=194, cell=hexagonal(3.1604, 12.2950),
        sites=(("Mo", (1 / 3, 2 / 3, 0.25)), ("S", (1 / 3, 2 / 3, 0.6215))),
        reference="Schoenfeld B., Huang J.J., Moss S.C., Acta Cryst. B39, 404 (1983)",
        insertion_ions=("Li", "Na", "Mg"),
    ),
    Host(
        slug="Mo6S8", formula="Mo3S4", working_ions=(), family="chevrel", setting="R-3:H",
        spacegroup="R-3", number=148, cell=hexagonal(9.1900, 10.8800),
        sites=(("Mo", (0.0172, 0.1686, 0.3995)), ("S", (0.0, 0.0, 0.2164)), ("S", (0.3169, 0.2933, 0.4117))),
        reference="Chevrel R., Sergent M., Prigent J., J. Solid State Chem. 3, 515 (1971); "
        "Levi E., Gofer Y., Aurbach D., Chem. Mater. 22, 860 (2010)",
        note="the bundled MgMo6S8 model without Mg (approximate: Mo-Mo 2.56-2.64 A, Mo-S 2.40-2.48 A)",
        insertion_ions=("Mg", "Ca", "Zn", "Li", "Na"),
    ),
]

def build(host: Host) -> Structure:
    """The ordered structure of one host."""
    lattice = Lattice.from_parameters(*host.cell)
    species = [el for el, _ in host.sites]
    coords = [xyz for _, xyz in host.sites]
    return Structure.from_spacegroup(host.setting, lattice, species, coords)


def cif_text(host: Host, structure: Structure) -> str:
    """The CIF of one host with its reference (and model note) as leading comments."""
    header = [f"# {host.formula} ({host.family}), {host.spacegroup} (No. {host.number})",
              f"# Reference: {host.reference}"]
    if host.note:
        header.append(f"# Model: {host.note}")
    header.append("# Written by data/hosts/_build_catalogue.py (screener bundled catalogue)")
    body = str(CifWriter(structure, symprec=0.01))
    return "\n".join(header) + "\n" + body


def check_round_trip(path: Path, structure: Structure) -> None:
    """Fail if the written CIF does not read back as the built structure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = Structure.from_file(path)
    if len(back) != len(structure) or not StructureMatcher().fit(back, structure):
        raise RuntimeError(f"{path.name} does not read back as the structure written")


def main() -> None:
    """Write every CIF and ``catalogue.json`` next to this script."""
    records = []
    for host in HOSTS + FRAMEWORKS:
        structure = build(host)
        name = f"{host.slug}.cif"
        (HERE / name).write_text(cif_text(host, structure))
        check_round_trip(HERE / name, structure)
        records.append(
            {
                "id": f"bundled-{host.slug.lower()}",
                "file": name,
                "formula": host.formula,
                "working_ions": list(host.working_ions),
                **({"insertion_ions": list(host.insertion_ions)} if host.insertion_ions else {}),
                "family": host.family,
                "spacegroup": host.spacegroup,
                "spacegroup_number": host.number,
                "reference": host.reference,
                "note": host.note,
                "nsites": len(structure),
            }
        )
    records.sort(key=lambda r: r["id"])
    (HERE / "catalogue.json").write_text(json.dumps(records, indent=1) + "\n")
    print(f"wrote {len(records)} hosts to {HERE}")


if __name__ == "__main__":
    main()
