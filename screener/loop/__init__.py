"""The loop back from the DFT team: predict a given hop, learn from finished NEBs, suggest the next ones.

- :mod:`~screener.loop.predict`: the barrier of a hop given as two end-point files, with warnings.
- :mod:`~screener.loop.neb_results`: finished NEB calculations read and checked (VASP, ASE).
- :mod:`~screener.loop.learn`: accepted NEB barriers added to a model's training set, trees refit.
- :mod:`~screener.loop.suggest`: the hops whose DFT barrier would most change a run's shortlist.
"""
