"""The lab: the paper's experiments around the library (``pip install 'hut-peft[experiments]'``).

Recipes (train/), data loaders (data/), metrics (metrics/), the registry of HUT and its baselines (methods/),
sweeps, reports, FLOPs and benchmarks. Everything here imports the library (``hut_peft.hut``); nothing in the
library imports the lab (docs/architecture.md has the map).
"""
