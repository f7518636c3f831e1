"""One barrier from two opinions: the fast model's prediction and a universal potential's NEB.

The two fail differently. The fast model shrinks high barriers but is rarely wild; an MLIP-NEB is
close in the typical case and, now and then, off by electronvolts. :class:`Combination` is the
posterior of a small robust model fitted on validation entries (DFT barrier, out-of-fold fast
prediction and its uncertainty, NEB barrier):

* the fast prediction ``p`` with uncertainty ``s`` says ``Em ~ N(p, (a s)^2)``;
* the NEB barrier ``n`` is ``N(scale Em, (scale sigma_neb)^2)`` with probability ``1 - eps``, and
  with probability ``eps`` an outlier anywhere in a window of ``width`` eV. ``scale`` below 1 is
  the systematic softening of universal potentials (their energy surfaces are too flat, so their
  barriers come out low by a roughly constant factor; Deng et al., npj Comput. Mater. 2025,
  doi:10.1038/s41524-024-01500-6): the NEB enters as ``n / scale``.

So the refined barrier is ``w m + (1 - w) p``, where ``m`` is the inverse-variance mean of ``p``
and ``n / scale`` and ``w`` the posterior probability that the NEB is not an outlier: a NEB near the
prediction pulls it in, one far beyond what both uncertainties allow is discounted. The
uncertainty is the posterior's standard deviation. Where there is no NEB barrier the refined
barrier is the fast prediction and ``status`` says why.

``data/refine/combination.json`` holds the fitted parameters per potential with their
cross-validated scores (``benchmarks/fit_combination.py``); a potential without its own fit
uses the ``generic`` entry (pooled over the validated potentials).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from screener.core.assets import assets_dir

#: Floor of the fast model's scaled uncertainty (eV).
MIN_SIGMA = 0.03

#: The fast model's uncertainty where it gave none (eV): uninformative, so the NEB decides.
UNKNOWN_SIGMA = 1.0

#: Candidate parameters of :meth:`Combination.fit`. On the narrower grid of 2026-12-05 (``a``
#: from 0.5, ``eps`` up to 0.35, ``sigma_neb`` up to 0.45) the fits sat on its edges: CHGNet's and
#: SevenNet-0's at ``a`` = 0.5 (the trees' spread overstates the fast model's error), SevenNet-0's
#: and MACE-MP-0's at ``eps`` = 0.35; after a first widening, the pooled fit at ``sigma_neb`` =
#: 0.45. ``eps`` is weakly determined by MAE (a handful of outliers decide it). ``scale`` covers
#: softening only (at most 1): a wider axis (0.7-1.1) gave CHGNet the same fit (0.8, inside it) and
#: SevenNet-0 a higher cross-validated MAE in 9 of 10 fold draws (benchmarks/results/em-band-v3_notes.md).
GRID: dict[str, tuple[float, ...]] = {
    "a": (0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0),
    "sigma_neb": (0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8),
    "eps": (0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7),
    "scale": (0.8, 0.9, 1.0),
}

#: Status of a refined barrier that combines both.
COMBINED = "combined"


def combination_path() -> Path:
    """The shipped ``combination.json``."""
    return assets_dir() / "refine" / "combination.json"


def posterior(fast: Any, fast_sigma: Any, neb: Any, a: float, sigma_neb: Any, eps: Any, scale: float = 1.0,
              width: float = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The posterior of the module docstring's model: mean, standard deviation and NEB weight.

    ``sigma_neb`` and ``eps`` may be arrays, one value per entry (a NEB's own quality); the
    other arguments as :class:`Combination`'s attributes and :meth:`Combination.combine`'s.
    """
    p = np.atleast_1d(np.asarray(fast, dtype=float))
    raw = np.atleast_1d(np.asarray(fast_sigma, dtype=float))
    s = np.maximum(a * np.where(np.isfinite(raw), raw, UNKNOWN_SIGMA), MIN_SIGMA)
    n = np.atleast_1d(np.asarray(neb, dtype=float)) / scale
    sn, e = np.asarray(sigma_neb, dtype=float), np.asarray(eps, dtype=float)
    have = np.isfinite(n)
    n_ = np.where(have, n, p)
    var_in = s**2 + sn**2
    like_in = (1 - e) * np.exp(-0.5 * (n_ - p) ** 2 / var_in) / np.sqrt(2 * np.pi * var_in)
    # Both densities of n / scale: an outlier spread over `width` eV of NEB barrier spreads over
    # width / scale of n / scale.
    like_out = e * scale / width
    w = np.where(have, like_in / (like_in + like_out), 0.0)
    v_c = 1.0 / (1.0 / s**2 + 1.0 / sn**2)
    m_c = v_c * (p / s**2 + n_ / sn**2)
    mean = w * m_c + (1 - w) * p
    second = w * (v_c + m_c**2) + (1 - w) * (s**2 + p**2)
    sigma = np.sqrt(np.maximum(second - mean**2, 0.0))
    return np.clip(mean, 0.0, None), sigma, w


@dataclass(frozen=True)
class Combination:
    """Parameters of the robust combination (see the module docstring).

    Attributes:
        a: scale of the fast model's uncertainty.
        sigma_neb: spread of a good NEB barrier around the DFT barrier (eV).
        eps: prior probability that a NEB barrier is an outlier.
        width: window of an outlier NEB barrier (eV).
        name: what it was fitted for (a potential's name, or ``generic``).
        scale: a good NEB barrier's expected ratio to the true one (below 1: a softened potential).
    """

    a: float = 1.0
    sigma_neb: float = 0.15
    eps: float = 0.1
    width: float = 10.0
    name: str = "generic"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not (self.a > 0 and self.sigma_neb > 0 and 0 < self.eps < 1 and self.width > 0 and self.scale > 0):
            raise ValueError(f"combination parameters out of range: {self}")

    def combine(self, fast: Any, fast_sigma: Any, neb: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Refined barriers, their uncertainties and the weight of the NEB in each.

        Args:
            fast: fast-model barriers (eV).
            fast_sigma: their uncertainties (eV).
            neb: NEB barriers (eV); NaN where there is none (the fast prediction is kept).

        Returns:
            ``(refined_em, refined_sigma, neb_weight)``, arrays of the inputs' length; refined
            barriers are never below 0.
        """
        return posterior(fast, fast_sigma, neb, self.a, self.sigma_neb, self.eps, self.scale, self.width)

    @classmethod
    def fit(cls, dft: Any, fast: Any, fast_sigma: Any, neb: Any, name: str = "generic") -> Combination:
        """The :data:`GRID` parameters with the lowest MAE on the given entries (rows without a NEB are left out)."""
        y, p, s, n = (np.asarray(x, dtype=float) for x in (dft, fast, fast_sigma, neb))
        keep = np.isfinite(n) & np.isfinite(y) & np.isfinite(p)
        best, best_mae = cls(name=name), math.inf
        for a, sn, eps, scale in itertools.product(GRID["a"], GRID["sigma_neb"], GRID["eps"], GRID["scale"]):
            c = cls(a=a, sigma_neb=sn, eps=eps, scale=scale, name=name)
            mae = float(np.mean(np.abs(c.combine(p[keep], s[keep], n[keep])[0] - y[keep])))
            if mae < best_mae - 1e-12:
                best, best_mae = c, mae
        return best

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Combination:
        """Build from :meth:`to_dict` output (other keys ignored)."""
        return cls(**{k: d[k] for k in ("a", "sigma_neb", "eps", "width", "name", "scale") if k in d})


def crossvalidate(dft: Any, fast: Any, fast_sigma: Any, neb: Any, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold refined barriers: each fold combined with parameters fitted on the other folds.

    Rows without a NEB barrier get the fast prediction (as at refine time).
    """
    y, p, s, n = (np.asarray(x, dtype=float) for x in (dft, fast, fast_sigma, neb))
    folds = np.random.default_rng(seed).permutation(len(y)) % n_folds
    out = p.copy()
    for k in range(n_folds):
        test = folds == k
        c = Combination.fit(y[~test], p[~test], s[~test], n[~test])
        out[test] = c.combine(p[test], s[test], n[test])[0]
    return out


def load_combination(potential: str, path: str | Path | None = None) -> tuple[Combination, dict[str, Any]]:
    """The combination fitted for ``potential`` (else the ``generic`` one) and its record.

    Returns:
        The combination and its JSON record (fit size, scores, fast-model version); the default
        :class:`Combination` with an empty record when no file is there.
    """
    p = Path(path) if path else combination_path()
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return Combination(), {}
    from screener.handoff.potentials import PotentialNotInstalledError, resolve

    try:
        name = resolve(potential).name
    except PotentialNotInstalledError:  # a name screener no longer knows: the pooled fit
        name = potential
    fits = data.get("potentials", {})
    rec = fits.get(name) or data.get("generic") or {}
    if not rec:
        return Combination(), {}
    return Combination.from_dict(rec["params"]), rec


def refined_status(neb_em: float, error: str = "", converged: bool | None = None, combination: str = "") -> str:
    """The ``refined_status`` of one row: how its refined barrier was made."""
    if error or not math.isfinite(neb_em):
        why = error.split(":")[0] if error else "no NEB barrier"
        return f"fast model only (NEB failed: {why})"
    text = f"{COMBINED} ({combination})" if combination else COMBINED
    return text if converged in (None, True) else f"{text}; NEB not converged"
