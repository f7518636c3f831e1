"""``benchmarks/run.py`` screens the catalogue several times over per timed run, each copy a task of its own."""

from __future__ import annotations

from benchmarks.run import CatalogueSource
from screener.pathways.config import PathwayConfig
from screener.screening.keys import host_key


def test_copies_of_the_catalogue_are_distinct_tasks_over_the_same_structures():
    one = CatalogueSource(("bundled-mgcr2o4", "bundled-licoo2")).fetch("Mg")
    three = CatalogueSource(("bundled-mgcr2o4", "bundled-licoo2"), copies=3).fetch("Mg")
    assert len(one) == 1 and len(three) == 3
    assert [h.item for h in three] == ["bundled-mgcr2o4", "bundled-mgcr2o4~2", "bundled-mgcr2o4~3"]
    assert all(h.structure == one[0].structure for h in three)
    config = PathwayConfig()
    keys = {host_key(h.item, "Mg", h.source, h.structure, config) for h in three}
    assert len(keys) == 3  # the run computes every copy: none is taken for another's result
