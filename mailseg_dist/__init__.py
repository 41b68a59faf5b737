"""mailseg_dist: distributed k-means segmentation of mailing users.

The public API (numpydoc docstrings on each)::

    import mailseg_dist as ms
    seg = ms.segment("users.xlsx", k="auto", seed=42)   # -> Segmentation
    seg.segments, seg.k_table, seg.k_reason, seg.scaler, seg.model, seg.metrics
    seg.predict(df); seg.write("Resultados")
    ms.run(...), ms.update(...), ms.score(...), ms.ingest(...), ms.generate(...)

The library is layered, each folder importing only the ones before it:
core (errors, config, catalog, storage, atomic, client, progress, monitor)
← inputs (schema, readers, clean, ingest, generate, sampling)
← model (features, scaler, kernels, engines, quality, selection, modelling, model files)
← segments (profiles, recommend, texts) ← outputs (export, figures, report, publish)
← workflows (run, score, update, job) ← api and viewer (the `mailseg view` web app and its queries).
"""

from mailseg_dist.core.errors import (
    ClusterError,
    ConfigError,
    InputDataError,
    MailsegError,
    UsageError,
)
from mailseg_dist.core.version import __version__

# Loaded on first use (PEP 562), so `mailseg --help` and a refused config cost no pandas/Dask import.
_LAZY = {"segment": "mailseg_dist.api", "run": "mailseg_dist.api", "update": "mailseg_dist.api",
         "score": "mailseg_dist.api", "ingest": "mailseg_dist.api", "generate": "mailseg_dist.api",
         "ingest_events": "mailseg_dist.api",
         "models": "mailseg_dist.api", "rollback": "mailseg_dist.api",
         "view": "mailseg_dist.api", "open_results": "mailseg_dist.api",
         "load_config": "mailseg_dist.core.config", "Segmentation": "mailseg_dist.workflows.segmentation"}

__all__ = ["segment", "Segmentation", "run", "update", "score", "ingest", "ingest_events", "generate", "models",
           "rollback", "view", "open_results", "load_config",
           "MailsegError", "UsageError", "ConfigError", "InputDataError", "ClusterError", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mailseg_dist' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
