"""Catalog paths from config (local folders or object-store URLs), and the checks that keep them inside their folders."""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path

from mailseg_dist.core.errors import UsageError
from mailseg_dist.core.storage import check_store, is_remote, location

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

# Every output name, declared once. The first three are the names the seed notebook's users know.
XLSX_NAME = "resultados_clustering.xlsx"    # workbook: Clusters, Recomendaciones, Eleccion_k
MODEL_PKL = "modelo_clustering.pkl"         # fitted sklearn KMeans (joblib)
SCALER_PKL = "escalador.pkl"                # fitted sklearn StandardScaler (joblib)
METADATA_JSON = "modelo_metadata.json"      # versions, metrics and the SHA-256 of every model file (written last)
PLAIN_JSON = "modelo.json"                  # the same model as plain numbers: scoring never unpickles
SEGMENTS_JSON = "segmentos.json"            # name, level, action and profile of each segment
USERS_SUBDIR = "usuarios"                   # per-user results, Parquet parts written by the workers
FIGURES_SUBDIR = "figuras"                  # PNG figures
REPORT_HTML = "informe.html"                # the report: open this first
SUMMARY_JSON = "run_summary.json"           # the run's commit mark, written last
PROFILE_HTML = "dask_performance_report.html"  # --profile
SCORED_SUBDIR = "scored"
VERSIONS_SUBDIR = "modelos"                 # one immutable folder per run or update: modelos/v0003-2026-11/
VERSION_JSON = "version.json"               # a version's record (month, parent, input hash, metrics), written last
CURRENT_JSON = "actual.json"                # modelos/actual.json names the current version
MONTHS_SUBDIR = "meses"                     # meses/2026-11/usuarios/: each month's per-user results                    # `score` output when --out is not given
FIGURE_FILES = {"elbow": "codo.png", "k_quality": "calidad_k.png", "segments": "segmentos.png",
                "profiles": "perfiles.png", "pca": "pca.png", "silhouette": "silueta.png",
                "drift_psi": "cambios_psi.png",               # update: PSI per feature against the bands
                "transitions": "cambios_transiciones.png",    # update: who moved from which segment to which
                "share_history": "cambios_proporciones.png"}  # update: each segment's share over the months


def local_path(value: str | Path, what: str) -> Path:
    """A path that the client itself reads (the config file) as an absolute local path; file:// URLs too."""
    found = location(value, what)
    if is_remote(found):
        raise UsageError(f"{what} {value}: must be a local path or file:// URL")
    return found


def check_month(month: str) -> str:
    """A month string is YYYY-MM and nothing else, so it can never climb out of a folder."""
    if not isinstance(month, str) or not _MONTH.fullmatch(month):
        raise UsageError(f"month expected YYYY-MM (e.g. 2026-11), found {month!r}")
    return month


def current_month() -> str:
    return _dt.date.today().strftime("%Y-%m")


class Catalog:
    """Every artifact's location, derived from the `paths` section of the config."""

    def __init__(self, cfg: dict, data_dir: str | None = None, out_dir: str | None = None):
        paths = cfg["paths"]
        self.data_dir = location(data_dir or paths["data_dir"], "data folder")
        self.out_dir = location(out_dir or paths["out_dir"], "output folder")
        check_store(self.data_dir, "data folder")
        check_store(self.out_dir, "output folder")
        self._paths = paths

    def _month_dir(self, subdir: str, month: str) -> Path:
        return self.data_dir / self._paths[subdir] / f"month={check_month(month)}"

    def raw(self, month: str) -> Path:
        return self._month_dir("raw_subdir", month)

    def users(self, month: str) -> Path:
        return self._month_dir("users_subdir", month)

    def rejects(self, month: str) -> Path:
        return self._month_dir("rejects_subdir", month)

    def manifest(self, month: str) -> Path:
        return self.data_dir / self._paths["manifests_subdir"] / f"month={check_month(month)}.json"

    def months(self) -> list[str]:
        """Months with a clean users layer, oldest first."""
        root = self.data_dir / self._paths["users_subdir"]
        found = [p.name.split("=", 1)[1] for p in root.glob("month=*") if p.is_dir()]
        return sorted(m for m in found if _MONTH.match(m))

    def default_input(self) -> Path:
        return location(self._paths["default_input"], "paths.default_input")
