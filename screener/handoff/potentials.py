"""Universal ML potentials behind ``refine``: which are installed, their calculators and versions."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
from typing import TYPE_CHECKING, Any

from screener.core.errors import ScreenerError

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator



POTENTIALS = ("chgnet", "sevenn")


_MODULES = {"chgnet": "chgnet", "sevenn": "sevenn"}


_INSTALL = {"chgnet": "pip install 'screener[refine]'  (or: pip install chgnet)",
            "sevenn": "pip install sevenn"}


class PotentialNotInstalledError(ScreenerError):
    """The ML potential asked for is not installed."""
    stage = "refine"


def check_potential(name: str) -> None:
    """Raise :class:`PotentialNotInstalledError` (with the install command) if ``name`` is missing."""
    if name not in POTENTIALS:
        raise PotentialNotInstalledError(f"unknown potential {name!r}; choose one of {POTENTIALS}")
    if importlib.util.find_spec(_MODULES[name]) is None:
        raise PotentialNotInstalledError(
            f"the {name} potential is not installed: {_INSTALL[name]}")


_MODELS: dict[tuple[str, str], Any] = {}


@contextlib.contextmanager
def _quiet():
    """Silence the banners potentials print on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _model(name: str, device: str) -> Any:
    """The loaded model of a potential, once per process (i.e. once per Dask worker)."""
    key = (name, device)
    if key not in _MODELS:
        check_potential(name)
        with _quiet():
            if name == "chgnet":
                from chgnet.model import CHGNet

                _MODELS[key] = CHGNet.load(verbose=False, use_device=device)
            else:
                from sevenn.calculator import SevenNetCalculator

                _MODELS[key] = SevenNetCalculator("7net-0", device=device).model
    return _MODELS[key]


def make_calculators(name: str, n: int, device: str = "cpu") -> list[Calculator]:
    """``n`` calculators of one potential sharing one loaded model (one per NEB image)."""
    model = _model(name, device)
    with _quiet():
        if name == "chgnet":
            cls = _chgnet_forces_calculator()
            return [cls(model=model, use_device=device, on_isolated_atoms="ignore") for _ in range(n)]
        from sevenn.calculator import SevenNetCalculator

        return [SevenNetCalculator(model, file_type="model_instance", device=device) for _ in range(n)]


@functools.cache
def _chgnet_forces_calculator() -> type:
    """CHGNetCalculator computing energy and forces only (no stress, no magmoms): ~1.8x faster.

    Every relaxation and NEB here is at fixed cell, so the stress is never needed.
    """
    from chgnet.model.dynamics import CHGNetCalculator

    class CHGNetForcesCalculator(CHGNetCalculator):
        implemented_properties = ["energy", "free_energy", "forces"]  # noqa: RUF012

        def calculate(self, atoms=None, properties=None, system_changes=None, task="ef"):  # noqa: ANN001
            super().calculate(atoms, properties, system_changes, task="ef")

    return CHGNetForcesCalculator


def potential_version(name: str) -> str:
    """``<package>-<version>/<model>`` of a potential."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version(_MODULES[name])
    except PackageNotFoundError:
        v = "?"
    model = {"chgnet": "CHGNet-0.3.0", "sevenn": "7net-0"}[name]
    return f"{name}-{v}/{model}"
