"""Universal ML potentials behind ``refine``, by name: what each needs, how it loads, its version.

Every potential loads through its own package's loader. Three ship their weights inside their
wheels and run offline: ``chgnet`` (CHGNet 0.3.0, the ``refine`` extra) and SevenNet's shipped
checkpoints ``7net-0``, ``7net-l3i5`` and ``7net-mf-0``. The others download their weights on first
use (MACE-MP, Orb-v3, MatterSim, fairchem's UMA); where that fails, :func:`load_potential` raises
one :class:`PotentialWeightsError` naming the potential, the package and what to do.

The loaded model is an :class:`~screener.handoff.batching.ImageEvaluator`: energies and forces
of a list of images, in one batched call for CHGNet and SevenNet.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from screener.core.errors import ScreenerError

if TYPE_CHECKING:
    from screener.handoff.batching import ImageEvaluator

log = logging.getLogger(__name__)


class PotentialNotInstalledError(ScreenerError):
    """The ML potential asked for is unknown or its package is not installed."""
    stage = "refine"


class PotentialWeightsError(ScreenerError):
    """The potential's package is installed but its weights cannot be had (e.g. no network)."""
    stage = "refine"


@dataclass(frozen=True)
class PotentialSpec:
    """A universal potential ``refine`` can run.

    Attributes:
        name: the name users give (``--potential``).
        module: the Python package that provides it.
        install: the command that installs that package.
        model: the model (checkpoint) it loads, as its package names it.
        offline: its weights ship inside the package's wheel.
        batched: all NEB images are evaluated in one call.
    """

    name: str
    module: str
    install: str
    model: str
    offline: bool
    batched: bool


_SPECS = (
    PotentialSpec("chgnet", "chgnet", "pip install 'screener[refine]'  (or: pip install chgnet)",
                  "CHGNet-0.3.0", True, True),
    PotentialSpec("7net-0", "sevenn", "pip install sevenn", "7net-0", True, True),
    PotentialSpec("7net-l3i5", "sevenn", "pip install sevenn", "7net-l3i5", True, True),
    PotentialSpec("7net-mf-0", "sevenn", "pip install sevenn", "7net-mf-0", True, True),
    PotentialSpec("mace-mp-0", "mace", "pip install mace-torch", "medium", False, False),
    PotentialSpec("mace-mp-0-large", "mace", "pip install mace-torch", "large", False, False),
    PotentialSpec("orb-v3", "orb_models", "pip install orb-models", "orb_v3_conservative_inf_omat", False, False),
    PotentialSpec("mattersim", "mattersim", "pip install mattersim", "MatterSim-v1.0.0-1M.pth", False, False),
    PotentialSpec("uma-s-1", "fairchem", "pip install fairchem-core", "uma-s-1", False, False),
)

#: Every potential by name.
SPECS: dict[str, PotentialSpec] = {s.name: s for s in _SPECS}

#: Names accepted for compatibility: ``sevenn`` was SevenNet-0 before 0.4.
ALIASES = {"sevenn": "7net-0", "mace": "mace-mp-0", "orb": "orb-v3"}

#: The names ``--potential`` accepts.
POTENTIALS = tuple(SPECS) + tuple(ALIASES)


def canonical_name(name: Any) -> Any:
    """The name an alias stands for (``sevenn`` -> ``7net-0``); any other value as it is."""
    return ALIASES.get(name, name) if isinstance(name, str) else name


def resolve(name: str) -> PotentialSpec:
    """The spec of a potential name (aliases included).

    Raises:
        PotentialNotInstalledError: an unknown name.
    """
    key = ALIASES.get(name, name)
    if key not in SPECS:
        raise PotentialNotInstalledError(f"unknown potential {name!r}; choose one of {', '.join(POTENTIALS)}")
    return SPECS[key]


def check_potential(name: str) -> None:
    """Raise :class:`PotentialNotInstalledError` (with the install command) if ``name`` is missing."""
    spec = resolve(name)
    if importlib.util.find_spec(spec.module) is None:
        raise PotentialNotInstalledError(f"the {spec.name} potential is not installed: {spec.install}")


@contextlib.contextmanager
def _quiet():
    """Silence the banners potentials print on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


_LOADED: dict[tuple[str, str], Any] = {}


def load_potential(name: str, device: str = "cpu") -> ImageEvaluator:
    """The potential ``name`` on ``device``, loaded once per process (i.e. once per Dask worker).

    Raises:
        PotentialNotInstalledError: unknown name or package missing.
        PotentialWeightsError: the package cannot get its weights (a download that failed).
    """
    spec = resolve(name)
    key = (spec.name, device)
    if key not in _LOADED:
        check_potential(spec.name)
        try:
            with _quiet():
                _LOADED[key] = _load(spec, device)
        except (PotentialNotInstalledError, PotentialWeightsError):
            raise
        except Exception as exc:  # noqa: BLE001 - each package fails its own way without weights
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            hint = ("its weights ship with the package: reinstall it" if spec.offline else
                    "it downloads its weights on first use; without network use one whose weights ship "
                    "with its package: " + ", ".join(n for n, s in SPECS.items() if s.offline))
            raise PotentialWeightsError(f"the {spec.name} potential ({spec.module}, model {spec.model}) could not "
                                        f"be loaded: {type(exc).__name__}: {first} ({hint})") from exc
    return _LOADED[key]


def _load(spec: PotentialSpec, device: str) -> ImageEvaluator:
    """Load one potential through its own package (the caller turns failures into one error)."""
    from screener.handoff.batching import (
        CalculatorEvaluator,
        CHGNetEvaluator,
        SevenNetEvaluator,
    )

    if spec.module == "chgnet":
        from chgnet.model import CHGNet

        return CHGNetEvaluator(CHGNet.load(verbose=False, use_device=device), device)
    if spec.module == "sevenn":
        from sevenn.calculator import SevenNetCalculator

        calc = SevenNetCalculator(spec.model, device=device, **_sevenn_modal(spec.model))
        return SevenNetEvaluator(calc)
    if spec.module == "mace":
        from mace.calculators import mace_mp

        return CalculatorEvaluator(mace_mp(model=spec.model, dispersion=False,
                                                    default_dtype="float64", device=device))
    if spec.module == "orb_models":
        from orb_models.forcefield import pretrained
        from orb_models.forcefield.calculator import ORBCalculator

        model = getattr(pretrained, spec.model)(device=device, precision="float32-high")
        return CalculatorEvaluator(ORBCalculator(model, device=device))
    if spec.module == "mattersim":
        from mattersim.forcefield import MatterSimCalculator

        return CalculatorEvaluator(MatterSimCalculator(load_path=spec.model, device=device))
    if spec.module == "fairchem":
        from fairchem.core import FAIRChemCalculator, pretrained_mlip

        unit = pretrained_mlip.get_predict_unit(spec.model, device=device)
        return CalculatorEvaluator(FAIRChemCalculator(unit, task_name="omat"))
    raise PotentialNotInstalledError(f"no loader for {spec.name}")  # pragma: no cover - every spec has one


def _sevenn_modal(model: str) -> dict[str, str]:
    """The fidelity of SevenNet's multi-fidelity checkpoint: its PBE(+U) head, as MPtrj's labels."""
    return {"modal": "PBE"} if model == "7net-mf-0" else {}


def potential_version(name: str) -> str:
    """``<package>-<version>/<model>`` of a potential."""
    from importlib.metadata import PackageNotFoundError, version

    spec = resolve(name)
    dist = {"mace": "mace-torch", "orb_models": "orb-models", "fairchem": "fairchem-core"}.get(spec.module, spec.module)
    try:
        v = version(dist)
    except PackageNotFoundError:
        v = "?"
    return f"{spec.module}-{v}/{spec.model}"
