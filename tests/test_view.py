"""`mailseg view` (issue 15): the pages run headless with Streamlit's AppTest over a real run's outputs.

One module fixture makes a real small run (text Ids, among them formula-looking ones) and a monthly update
over it; every expectation below is computed independently from the files the job wrote (run_summary.json,
segmentos.json, usuarios/ read with pandas), never from the viewer's own queries.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from view_helpers import DAYS_ES, FORMULA_IDS, expected_csv, pandas_filter, publish

import mailseg_dist as ms
from mailseg_dist.core.catalog import (
    MONTHS_SUBDIR,
    SEGMENTS_JSON,
    SUMMARY_JSON,
    USERS_SUBDIR,
)

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from mailseg_dist import viewer
from mailseg_dist.viewer import queries as q

APP = str(Path(viewer.__file__).with_name("app.py"))


@pytest.fixture(scope="module")
def published(tmp_path_factory, dask_client):
    """A real `run` (month 2026-11) then `update` (2026-12) into one output folder; text Ids."""
    return publish(tmp_path_factory.mktemp("view"), dask_client)


@pytest.fixture(scope="module")
def frame(published) -> pd.DataFrame:
    return pq.read_table(published / USERS_SUBDIR).to_pandas()


def _app(out, lang="es") -> AppTest:
    os.environ["MAILSEG_VIEW_OUT"] = str(out)
    os.environ["MAILSEG_VIEW_LANG"] = lang
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(autouse=True)
def _clean_env():
    yield
    for name in ("MAILSEG_VIEW_OUT", "MAILSEG_VIEW_LANG"):
        os.environ.pop(name, None)


def _go(at: AppTest, page: str) -> AppTest:
    at.sidebar.radio(key="page").set_value(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _es_int(n) -> str:
    return f"{int(n):,}".replace(",", ".")


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


# ---------------------------------------------------------------- overview
def test_overview_numbers_equal_run_summary_and_segment_names_are_shown(published):
    summary = json.loads((published / SUMMARY_JSON).read_text(encoding="utf-8"))
    segments = json.loads((published / SEGMENTS_JSON).read_text(encoding="utf-8"))["segments"]
    at = _app(published)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Mes"] == summary["month"] == "2026-12"
    assert metrics["Usuarios válidos"] == _es_int(summary["rows_kept"]) == "3.000"
    assert metrics["Filas rechazadas"] == _es_int(summary["rows_rejected"])
    assert metrics["Número de segmentos (k)"] == str(summary["k"]) == "4"
    assert metrics["Silueta"] == f"{summary['silhouette']:.3f}".replace(".", ",")
    stab = np.mean(list(summary["stability"].values()))
    assert metrics["Estabilidad media"] == f"{stab:.2f}".replace(".", ",")
    assert any(summary["k_reason"] in m.value for m in at.markdown)
    table = at.table[0].value
    assert list(table.index) == [s["nombre"] for s in segments] == [s["name"] for s in summary["segments"]]
    assert list(table["Nivel"]) == [s["nivel"] for s in segments]
    assert list(table["Usuarios"]) == [_es_int(s["size"]) for s in segments]
    assert list(table["Proporción"]) == [f"{100 * s['share']:.1f} %".replace(".", ",") for s in segments]
    assert list(table["Motivo"]) == [s["motivo"] for s in segments]
    assert len(at.get("image")) >= 6  # the report's figures


def test_english_pages(published):
    at = _app(published, lang="en")
    assert at.title[0].value == "Mailing user segments"
    labels = [m.label for m in at.metric]
    assert "Valid users" in labels and "Number of segments (k)" in labels
    at.sidebar.radio(key="lang").set_value("es").run()
    assert at.title[0].value == "Segmentos de usuarios de mailing"


# ---------------------------------------------------------------- filters
def test_segment_page_filters_equal_a_pandas_filter(published, frame):
    at = _go(_app(published), "segment")
    cluster = int(frame["cluster"].value_counts().idxmax())
    at.selectbox(key="seg_pick").set_value(cluster).run()
    at.radio(key="seg_buyer").set_value("No").run()
    at.multiselect(key="seg_days").set_value([1, 2, 4]).run()
    at.slider(key="seg_hours").set_value((14, 21)).run()
    at.slider(key="seg_sil").set_value((0.1, 0.9)).run()
    assert not at.exception
    expected = pandas_filter(frame, cluster=cluster, buyer=False, days=[1, 2, 4], hours=(14, 21), sil=(0.1, 0.9))
    assert 50 < len(expected) < len(frame)
    assert f"{_es_int(len(expected))} usuarios coinciden" in [m.value for m in at.markdown]
    shown = at.dataframe[0].value
    assert list(shown["Id"]) == list(expected["Id"].head(50))
    assert set(shown["Segmento"]) == set(expected["segmento"].astype(str)) and set(shown["Comprador"]) == {"No"}
    # page 2, sorted by silhouette, highest first
    at.selectbox(key="seg_sort").set_value("silhouette_score").run()
    at.checkbox(key="seg_desc").check().run()
    at.number_input(key="seg_page").set_value(2).run()
    ranked = expected.sort_values(["silhouette_score", "Id"], ascending=[False, True])
    assert list(at.dataframe[0].value["Id"]) == list(ranked["Id"].iloc[50:100])
    assert at.dataframe[0].value["Silueta"].is_monotonic_decreasing


def test_segment_page_profile_action_and_reason(published):
    segments = json.loads((published / SEGMENTS_JSON).read_text(encoding="utf-8"))["segments"]
    at = _go(_app(published), "segment")
    seg = segments[1]
    at.selectbox(key="seg_pick").set_value(seg["cluster"]).run()
    text = "\n".join(m.value for m in at.markdown)
    assert seg["accion"] in text and seg["motivo"] in text
    profile = at.table[0].value
    assert profile.loc["Tasa de apertura", "Segmento"] == f"{100 * seg['open_rate']:.1f} %".replace(".", ",")


@pytest.mark.parametrize("case", [
    {"levels": ("Alta",)},
    {"hours": (0, 6)},          # 23.5 and later round to 0
    {"hours": (20, 23)},
    {"days": (0, 6), "buyer": True},
    {"silhouette": (-1.0, 0.2)},
    {"clusters": (0, 2), "levels": ("Baja",), "days": (3,)},
])
def test_query_filters_equal_pandas(published, frame, case):
    results = q.open_results(published)
    filters = q.Filters(**case)
    expected = pandas_filter(frame, levels=case.get("levels"), sil=case.get("silhouette"), buyer=case.get("buyer"),
                              days=case.get("days"), hours=case.get("hours"))
    if "clusters" in case:
        expected = expected[expected["cluster"].isin(case["clusters"])]
    assert q.count(results, filters) == len(expected)
    assert list(q.page(results, filters, limit=len(frame))["Id"]) == list(expected["Id"])


def test_advice_filter_equals_pandas(published, frame):
    results = q.open_results(published)
    kinds = q.advice_kinds(results)
    assert len(kinds) < 12  # ~500 texts grouped into a few actions
    pick = sorted(kinds)[:2]
    filters = q.from_params(results, {"advice": "|".join(pick)})
    expected = pandas_filter(frame, kinds=pick)
    assert q.count(results, filters) == len(expected) > 0


# ---------------------------------------------------------------- one user
@pytest.mark.parametrize("typed", ["=1+1", "U1500"])
def test_id_search_finds_the_user_and_their_segment(published, frame, typed):
    at = _go(_app(published), "user")
    at.text_input(key="user_id").input(typed).run()
    row = frame[frame["Id"] == typed]
    if row.empty:  # U1500 may not exist: then the page says so
        assert any(typed in w.value for w in at.warning)
        return
    row = row.iloc[0]
    metrics = {m.label: m.value for m in at.metric}
    assert f"**Segmento:** {row['segmento']} (nivel {row['nivel']})" in [m.value for m in at.markdown]
    day = int(np.clip(math.floor(row["day_of_week"] + 0.5), 0, 6))
    hour = int(math.floor(row["hour"] + 0.5) % 24)
    assert metrics["Mejor momento de envío"] == f"{DAYS_ES[day]} {hour:02d}:00"
    assert any(row["recomendacion"] in m.value for m in at.markdown)
    plain = json.loads((published / "modelo.json").read_text(encoding="utf-8"))
    x = (row[plain["features"]].to_numpy(float) - plain["scaler"]["mean"]) / plain["scaler"]["scale"]
    own = np.linalg.norm(np.asarray(plain["centers"])[int(row["cluster"])] - x)
    assert any(f"{own:.2f}".replace(".", ",") in m.value for m in at.markdown)


def test_unknown_id_says_so(published):
    at = _go(_app(published), "user")
    at.text_input(key="user_id").input("no-such-user").run()
    assert "no-such-user" in at.warning[0].value and not at.exception


# ---------------------------------------------------------------- export
async def _body(response) -> bytes:
    return b"".join([chunk async for chunk in response.body_iterator])


@pytest.mark.parametrize("excel", [True, False])
def test_export_link_downloads_exactly_the_expected_users(published, frame, excel):
    from mailseg_dist.viewer.serve import export_response

    at = _go(_app(published), "export")
    clusters = sorted(frame["cluster"].unique())[:2]
    at.multiselect(key="exp_segments").set_value(clusters).run()
    at.radio(key="exp_buyer").set_value("Sí").run()
    if not excel:
        at.checkbox(key="exp_excel").uncheck().run()
    expected = pandas_filter(frame, buyer=True)
    expected = expected[expected["cluster"].isin(clusters)]
    assert f"{_es_int(len(expected))} usuarios coinciden" in [m.value for m in at.markdown]
    link = at.get("link_button")[0].proto.url
    assert urlparse(link).path == "/export.csv"
    params = dict(parse_qsl(urlparse(link).query))
    response = export_response(str(published), params)
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    body = asyncio.run(_body(response))
    assert body == expected_csv(expected, excel)
    assert body.startswith(b"\xef\xbb\xbfId;segmento;") if excel else body.startswith(b"Id,segmento,")


def test_export_neutralises_formula_looking_ids(published, frame):
    results = q.open_results(published)
    body = b"".join(q.export_csv(results, lang="es", excel=True, batch_rows=700)).decode("utf-8-sig")
    assert body.encode("utf-8") == expected_csv(frame, True)[3:]  # several batches, same bytes
    lines = body.split("\r\n")
    assert len(lines) == len(frame) + 2 and lines[-1] == ""
    for formula in FORMULA_IDS:
        assert sum(line.startswith(f"'{formula};") for line in lines) == 1, formula
        assert not any(line.startswith(f"{formula};") for line in lines)


def test_export_route_refuses_a_bad_parameter_in_one_line(published):
    from mailseg_dist.viewer.serve import export_response

    response = export_response(str(published), {"segments": "1,x"})
    assert response.status_code == 400 and b"segments expected" in response.body
    for month in ("../../..", "2026-11/../../x", "2027-01"):  # only a kept YYYY-MM month, nothing outside
        response = export_response(str(published), {"month": month})
        assert response.status_code == 400 and b"month" in response.body, month


# ---------------------------------------------------------------- months
def test_months_page_shares_and_who_moved(published):
    at = _go(_app(published), "months")
    then = pq.read_table(published / MONTHS_SUBDIR / "2026-11" / USERS_SUBDIR, columns=["Id", "cluster"]).to_pandas()
    now = pq.read_table(published / MONTHS_SUBDIR / "2026-12" / USERS_SUBDIR, columns=["Id", "cluster"]).to_pandas()
    both = then.merge(now, on="Id", suffixes=("_then", "_now"))
    expected = pd.crosstab(both["cluster_then"], both["cluster_now"])
    names = json.loads((published / SEGMENTS_JSON).read_text(encoding="utf-8"))["segments"]
    names = {s["cluster"]: s["nombre"] for s in names}
    shares, moves = at.table[0].value, at.table[1].value
    assert list(shares.index) == ["2026-11", "2026-12"]
    assert set(shares.columns) == set(names.values())
    for month in ("2026-11", "2026-12"):
        summary = json.loads(next((published / "modelos").glob(f"*-{month}/{SUMMARY_JSON}")).read_text("utf-8"))
        for seg in summary["segments"]:
            assert shares.loc[month, seg["name"]] == f"{100 * seg['share']:.1f} %".replace(".", ",")
    for c_then, row in expected.iterrows():
        for c_now, n in row.items():
            assert moves.loc[names[c_then], names[c_now]] == _es_int(n)
    off = expected.where(~np.eye(len(expected), dtype=bool), 0).stack()
    a, b = (int(v) for v in off.idxmax())  # the biggest move between two different segments
    assert off.max() > 0
    at.selectbox(key="mv_a").set_value(a).run()
    at.selectbox(key="mv_b").set_value(b).run()
    movers = set(at.table[2].value["Id"])
    truth = set(both[(both["cluster_then"] == a) & (both["cluster_now"] == b)]["Id"])
    assert movers and movers <= truth and len(movers) == min(20, len(truth))


def test_picking_an_earlier_month_shows_that_month(published):
    at = _app(published)
    at.sidebar.selectbox(key="month").set_value("2026-11").run()
    summary = json.loads(next((published / "modelos").glob(f"*-2026-11/{SUMMARY_JSON}")).read_text("utf-8"))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Mes"] == "2026-11" and metrics["Usuarios válidos"] == _es_int(summary["rows_kept"])
    _go(at, "export")
    link = at.get("link_button")[0].proto.url
    assert dict(parse_qsl(urlparse(link).query))["month"] == "2026-11"


# ---------------------------------------------------------------- folders that are not (yet) results
@pytest.mark.parametrize("kind", ["empty", "half", "missing"])
def test_a_folder_without_run_summary_is_a_clear_message(tmp_path, published, kind):
    folder = tmp_path / "out"
    if kind == "empty":
        folder.mkdir()
    elif kind == "half":  # a job stopped before its commit mark: results but no run_summary.json
        folder.mkdir()
        (folder / USERS_SUBDIR).mkdir()
        (folder / SEGMENTS_JSON).write_bytes((published / SEGMENTS_JSON).read_bytes())
    at = _app(folder)
    assert not at.exception
    assert "run_summary.json" in at.error[0].value or "not found" in at.error[0].value
    assert "no tiene resultados" in at.error[0].value
    assert not at.metric and not at.table


def test_the_app_never_writes_into_the_output_folder(published):
    before = _snapshot(published)
    at = _app(published)
    for page in ("segment", "user", "export", "months"):
        _go(at, page)
    at.sidebar.radio(key="page").set_value("user").run()
    at.text_input(key="user_id").input("=1+1").run()
    b"".join(q.export_csv(q.open_results(published)))
    assert _snapshot(published) == before


# ---------------------------------------------------------------- the command
def test_view_without_streamlit_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    import importlib.util

    from jobs.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name, *a))
    code = main(["view", "--out", str(tmp_path), "--port", "8599"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) >= 1
    assert err[-1] == 'mailseg: error: the viewer needs Streamlit: pip install "mailseg[view]"'


def test_view_refuses_a_port_in_use(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ms.UsageError, match=f"cannot listen on 127.0.0.1:{port}"):
            ms.view(tmp_path, port=port)


def test_the_server_command_binds_loopback_and_runs_the_packaged_server():
    from mailseg_dist.viewer.launch import SERVER, command

    cmd = command("/data/Resultados", 8123, "127.0.0.1", "en")
    assert Path(SERVER).is_file() and Path(SERVER).with_name("app.py").is_file()
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8123"
    assert cmd[cmd.index("--") + 1:] == ["--out", "/data/Resultados", "--lang", "en"]


# ---------------------------------------------------------------- several part files, as a cluster writes them
@pytest.fixture(scope="module")
def multipart(published, tmp_path_factory):
    """The published folder with usuarios/ split into 3 part files, each with its own text dictionaries."""
    import shutil

    import pyarrow as pa

    folder = tmp_path_factory.mktemp("multipart") / "Resultados"
    shutil.copytree(published, folder, ignore=shutil.ignore_patterns(USERS_SUBDIR, "modelos", MONTHS_SUBDIR))
    whole = pq.read_table(published / USERS_SUBDIR)
    (folder / USERS_SUBDIR).mkdir()
    for i, (start, length) in enumerate(((0, 1000), (1000, 1100), (2100, len(whole) - 2100))):
        part = whole.slice(start, length)
        part = pa.table({name: (part[name].cast(pa.string()).dictionary_encode()
                                if pa.types.is_dictionary(part[name].type) else part[name])
                         for name in part.column_names})
        pq.write_table(part, folder / USERS_SUBDIR / f"part-{i:05d}.parquet")
    parts = [pq.read_table(p)["segmento"].chunk(0).dictionary.to_pylist()
             for p in sorted((folder / USERS_SUBDIR).iterdir())]
    assert len({tuple(d) for d in parts}) > 1  # the dictionaries differ between parts
    return folder


def test_several_parts_with_their_own_dictionaries(multipart, frame):
    results = q.open_results(multipart)
    filters = q.Filters(buyer=False, hours=(12, 22))
    expected = pandas_filter(frame, buyer=False, hours=(12, 22))
    assert q.count(results, filters) == len(expected)
    ranked = expected.sort_values(["silhouette_score", "Id"], ascending=[False, True])
    page = q.page(results, filters, offset=50, limit=50, sort_by="silhouette_score", descending=True)
    assert list(page["Id"]) == list(ranked["Id"].iloc[50:100])
    assert list(page["segmento"].astype(str)) == list(ranked["segmento"].astype(str).iloc[50:100])
    assert b"".join(q.export_csv(results, filters, excel=True, batch_rows=400)) == expected_csv(expected, True)
    kinds = q.advice_kinds(results)
    assert sum(len(v) for v in kinds.values()) == frame["recomendacion"].astype(str).nunique()
    assert q.find_user(results, "=1+1")["segmento"] == frame.set_index("Id").loc["=1+1", "segmento"]


# ---------------------------------------------------------------- an object store
def test_queries_over_an_object_store_folder(published, frame, bucket):
    """The same folder uploaded to S3 (moto): DuckDB reads the pyarrow dataset through fsspec."""
    from store_helpers import store_fs

    url = f"{bucket}/Resultados"
    store_fs().put(str(published), url.removeprefix("s3://"), recursive=True)
    results = q.open_results(url)
    assert results.month == "2026-12" and results.version
    filters = q.Filters(buyer=True, hours=(15, 20))
    expected = pandas_filter(frame, buyer=True, hours=(15, 20))
    assert q.count(results, filters) == len(expected)
    assert list(q.page(results, filters, limit=40, offset=10)["Id"]) == list(expected["Id"].iloc[10:50])
    assert q.find_user(results, "@SUM(A1)")["segmento"] == frame.set_index("Id").loc["@SUM(A1)", "segmento"]
    assert b"".join(q.export_csv(results, filters)) == expected_csv(expected, excel=False)
    assert [m["month"] for m in results.months()] == ["2026-11", "2026-12"]
    assert not q.transitions(results, "2026-11", "2026-12").empty
