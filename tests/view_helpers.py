"""A real small output folder for the viewer's tests (test_view, test_view_browser), and the export they expect.

`publish` runs `run` (month 2026-11) then `update` (2026-12) into one folder, with text Ids among which are
formula-looking ones; `expected_csv` writes the expected audience file with pandas, independently of the
viewer's code; `pandas_filter` applies the viewer's filters directly to the user table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import mailseg_dist as ms

SMALL = {"selection": {"silhouette_sample": 1500}, "quality": {"bootstrap_rounds": 2, "bootstrap_sample": 1500}}
DAYS_ES = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]
FORMULA_IDS = ["=1+1", "+34600111222", "-2", "@SUM(A1)"]


def publish(root, client, rows: int = 3000):
    ms.generate(rows, root / "gen.csv", seed=21)
    users = pd.read_csv(root / "gen.csv")
    users["Id"] = "U" + users["Id"].astype(str)
    users.loc[:len(FORMULA_IDS) - 1, "Id"] = FORMULA_IDS
    users.to_csv(root / "m1.csv", index=False)
    nxt = users.copy()
    rng = np.random.default_rng(3)
    changed = rng.random(len(nxt)) < 0.3
    nxt.loc[changed, "send"] = nxt.loc[changed, "send"] + rng.integers(1, 6, changed.sum())
    nxt.loc[changed, "Total"] = nxt.loc[changed, "Total"] + 1
    nxt.to_csv(root / "m2.csv", index=False)
    out, data = root / "Resultados", root / "data"
    ms.run(root / "m1.csv", out=out, data_dir=data, month="2026-11", k=4, seed=4, config=SMALL, client=client)
    ms.update(root / "m2.csv", out=out, data_dir=data, month="2026-12", config=SMALL, client=client)
    return out


def pandas_filter(df: pd.DataFrame, *, cluster=None, levels=None, kinds=None, sil=None, buyer=None, days=None,
                  hours=None) -> pd.DataFrame:
    """The same conditions written directly on the user table (the advice's rounding of weekday and hour)."""
    keep = pd.Series(True, index=df.index)
    if cluster is not None:
        keep &= df["cluster"] == cluster
    if levels:
        keep &= df["nivel"].astype(str).isin(levels)
    if kinds:
        text = df["recomendacion"].astype(str)
        kind = text.str.split("; ").str[0].str.split(" \\(").str[0].str.split(": ").str[0].str.rstrip(".")
        keep &= kind.isin(kinds)
    if sil is not None:
        keep &= df["silhouette_score"].between(*sil)
    if buyer is not None:
        keep &= df["Comprador"] == int(buyer)
    day = np.clip(np.floor(df["day_of_week"] + 0.5), 0, 6).astype(int)
    hour = (np.floor(df["hour"] + 0.5) % 24).astype(int)
    if days:
        keep &= day.isin(days)
    if hours is not None:
        keep &= hour.between(*hours)
    return df[keep]


def expected_csv(rows: pd.DataFrame, excel: bool) -> bytes:
    """Id, segment, advice, best send time (Spanish headers), formula-looking text prefixed with '."""
    def safe(text: str) -> str:
        return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

    day = np.clip(np.floor(rows["day_of_week"] + 0.5), 0, 6).astype(int)
    hour = (np.floor(rows["hour"] + 0.5) % 24).astype(int)
    table = pd.DataFrame({"Id": rows["Id"].map(safe), "segmento": rows["segmento"].astype(str).map(safe),
                          "recomendacion": rows["recomendacion"].astype(str).map(safe),
                          "mejor_momento": [f"{DAYS_ES[d]} {h:02d}:00" for d, h in zip(day, hour)]})
    text = table.to_csv(sep=";" if excel else ",", index=False, lineterminator="\r\n")
    return ("\ufeff" if excel else "").encode("utf-8") + text.encode("utf-8")
