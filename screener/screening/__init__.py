"""Screening: hosts -> hops -> predicted barriers -> ranked tables, on Dask, resumable.

:func:`screen` (:mod:`~screener.screening.run`) drives the pure tasks of
:mod:`~screener.screening.tasks` on Dask (:mod:`~screener.screening.execution`), keeps finished work in
the part store (:mod:`~screener.screening.store`) under content keys (:mod:`~screener.screening.keys`)
and assembles the tables (:mod:`~screener.screening.tables`); :func:`load_run` reads a run folder back.
"""

from screener.screening.execution import dask_client
from screener.screening.run import ScreenResult, screen
from screener.screening.rundir import RunData, load_run
from screener.screening.tables import FAILURE_COLUMNS, HOP_COLUMNS, STRUCTURE_COLUMNS

__all__ = [
    "FAILURE_COLUMNS",
    "HOP_COLUMNS",
    "RunData",
    "STRUCTURE_COLUMNS",
    "ScreenResult",
    "dask_client",
    "load_run",
    "screen",
]
