"""k-means engines, one signature: fit(X, k, mcfg, init_centers=None, sample=None) -> EngineResult.

X is the scaled feature matrix: scaler.ScaledData (preferred; minibatch reads
its Parquet units), a Dask array or a Dask DataFrame. `sample` is the scaled
hashed sample (NumPy), used for initialisation and empty-cluster moves.
`fit_many(X, ks, ...)` (lloyd only) fits several k in the same passes.
"""

from __future__ import annotations

import importlib

from mailseg_dist.core.settings import ENGINES as ENGINE_NAMES
from mailseg_dist.model.engines.lloyd import EngineResult, fit_many

# One module per engine name of the config table (settings.ENGINES), each with the same fit().
ENGINES = {name: importlib.import_module(f"{__name__}.{name}").fit for name in ENGINE_NAMES}


def get_engine(name: str):
    if name not in ENGINES:
        raise ValueError(f"model.engine expected one of {', '.join(ENGINES)}, found {name!r}")
    return ENGINES[name]


__all__ = ["ENGINES", "EngineResult", "fit_many", "get_engine"]
