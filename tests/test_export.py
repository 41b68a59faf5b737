"""Per-user results, the results workbook and the model files, on small multi-partition data."""

from __future__ import annotations

import hashlib
import json
import types

import dask.dataframe as dd
import numpy as np
import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import make_clean_users
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import euclidean_distances, silhouette_samples
from sklearn.preprocessing import StandardScaler

import mailseg_dist.outputs.workbook as workbook_module
from mailseg_dist.core.config import load_config
from mailseg_dist.core.errors import InputDataError
from mailseg_dist.inputs.sampling import hash_uniform
from mailseg_dist.model.features import feature_frame
from mailseg_dist.outputs.export import (
    RESULT_COLUMNS,
    load_model_files,
    load_plain_model,
    scored_parts,
    user_scoring,
    write_model_files,
    write_user_results,
)
from mailseg_dist.outputs.workbook import write_results_xlsx
from mailseg_dist.segments.profiles import segment_profiles
from mailseg_dist.segments.recommend import segment_table, user_recommendations


def fake_result(df: pd.DataFrame, cfg: dict, k: int = 3, seed: int = 0) -> types.SimpleNamespace:
    """A stand-in for modelling.ModelResult fitted with sklearn on `df` (small)."""
    x_frame = feature_frame(df, cfg["features"])
    scaler = StandardScaler().fit(x_frame)
    x = scaler.transform(x_frame)
    model = KMeans(k, n_init=3, random_state=seed).fit(x)
    labels = model.labels_
    silhouette = silhouette_samples(x, labels)
    k_table = []
    for kk in range(2, 6):
        m = KMeans(kk, n_init=2, random_state=seed).fit(x)
        k_table.append({"k": kk, "inertia": float(m.inertia_),
                        "silhouette": float(silhouette_samples(x, m.labels_).mean()),
                        "calinski_harabasz": 100.0 + kk, "davies_bouldin": 1.0 / kk,
                        "sizes": np.bincount(m.labels_, minlength=kk).tolist()})
    return types.SimpleNamespace(
        k=k, engine="lloyd", scaler=scaler, model=model, feature_names=list(x_frame.columns),
        centers=model.cluster_centers_, inertia=float(model.inertia_), silhouette=float(silhouette.mean()),
        silhouette_by_cluster={c: silhouette[labels == c] for c in range(k)}, calinski_harabasz=123.4,
        davies_bouldin=0.9, k_table=k_table, k_reason={"rule": "fixed", "k": 3}, pca=PCA(2).fit(x),
        stability={c: 0.5 + 0.2 * c for c in range(k)}, cluster_sizes={c: int((labels == c).sum()) for c in range(k)},
        sample=df.assign(cluster=labels), n_rows=len(df), n_iter=int(model.n_iter_), timings={"fit": 0.1})


def write_parts(df: pd.DataFrame, folder) -> None:
    folder.mkdir(parents=True)
    bounds = np.linspace(0, len(df), 4, dtype=int)
    pieces = [df.iloc[:bounds[1]], df.iloc[0:0], df.iloc[bounds[1]:bounds[2]], df.iloc[bounds[2]:]]
    for i, piece in enumerate(pieces):
        piece.to_parquet(folder / f"part-{i:05d}.parquet", index=False)


@pytest.fixture
def cfg():
    return load_config()


@pytest.fixture
def setup(cfg, clean_users, users_parquet):
    result = fake_result(clean_users, cfg)
    table = segment_table(segment_profiles(scored_parts(users_parquet, result, cfg), result.k), cfg)
    return clean_users, users_parquet, result, table


def test_user_results_hold_every_user_once_with_the_models_labels(dask_client, tmp_path, cfg, setup):
    users, folder, result, table = setup
    out = write_user_results(folder, tmp_path / "Resultados", result, table, cfg)
    assert out == tmp_path / "Resultados" / "usuarios"
    assert sorted(p.name for p in out.iterdir()) == [f"part-{i:05d}.parquet" for i in range(4)]
    got = pd.read_parquet(out)
    assert list(got.columns) == RESULT_COLUMNS
    assert len(got) == len(users) and got["Id"].is_unique and set(got["Id"]) == set(users["Id"])
    got = got.set_index("Id").loc[users["Id"]]
    x = result.scaler.transform(feature_frame(users, cfg["features"]))
    np.testing.assert_array_equal(got["cluster"], result.model.predict(x))
    dist = euclidean_distances(x, result.model.cluster_centers_)
    own = dist[np.arange(len(x)), got["cluster"]]
    other = np.where(np.eye(result.k, dtype=bool)[got["cluster"]], np.inf, dist).min(axis=1)
    np.testing.assert_allclose(got["silhouette_score"], (other - own) / np.maximum(own, other), atol=1e-12)
    np.testing.assert_allclose(got[["pca1", "pca2"]], result.pca.transform(x), atol=1e-12)
    np.testing.assert_array_equal(got["segmento"], table.loc[got["cluster"], "nombre"])
    np.testing.assert_array_equal(got["nivel"], table.loc[got["cluster"], "nivel"])
    expected = user_recommendations(got.reset_index(), table, cfg)
    assert got["recomendacion"].tolist() == expected.tolist()
    clean = list(users.columns[:-1])  # all but source_row
    pd.testing.assert_frame_equal(got.reset_index()[clean], users[clean].reset_index(drop=True))
    meta = pq.ParquetFile(out / "part-00000.parquet").metadata.row_group(0)
    dictionary = {name: bool(set(meta.column(i).encodings) & {"PLAIN_DICTIONARY", "RLE_DICTIONARY"})
                  for i, name in enumerate(RESULT_COLUMNS)}
    assert [c for c, encoded in dictionary.items() if not encoded] == ["Id", "silhouette_score", "pca1", "pca2"]


def test_profiles_of_the_scored_part_files_equal_those_of_dasks_read(dask_client, cfg, setup):
    """The folder's part files read by pyarrow in the tasks score as the same folder read by dd.read_parquet."""
    users, folder, result, table = setup
    parts = scored_parts(folder, result, cfg)
    assert len(parts) == 4  # a part per file, the empty one included
    read_by_dask = dd.read_parquet([str(p) for p in sorted(folder.glob("*.parquet"))])
    pd.testing.assert_frame_equal(segment_profiles(parts, result.k),
                                  segment_profiles(scored_parts(read_by_dask, result, cfg), result.k))


def test_profiles_from_written_results_equal_lazy_scoring(dask_client, tmp_path, cfg, setup):
    users, folder, result, table = setup
    out = write_user_results(folder, tmp_path / "R", result, table, cfg)
    written = segment_profiles(out, result.k)
    pd.testing.assert_frame_equal(written, table[written.columns], check_exact=False, rtol=1e-12)
    again = write_user_results(folder, tmp_path / "R", result, table, cfg)  # swapped in, no leftovers
    assert [p.name for p in (tmp_path / "R").iterdir()] == ["usuarios"] and len(list(again.iterdir())) == 4


def test_workbook_sheets_columns_and_values(dask_client, tmp_path, cfg, setup):
    users, folder, result, table = setup
    out = write_user_results(folder, tmp_path, result, table, cfg)
    path = write_results_xlsx(out, tmp_path / "r.xlsx", table, result.k_table, cfg, k_reason="elbow")
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Clusters", "Recomendaciones", "Eleccion_k"]
    rows = list(wb["Clusters"].values)
    assert list(rows[0]) == RESULT_COLUMNS and len(rows) == len(users) + 1
    sheet = pd.DataFrame(rows[1:], columns=RESULT_COLUMNS)
    parquet = pd.read_parquet(out)
    np.testing.assert_array_equal(sheet["Id"], parquet["Id"])
    np.testing.assert_allclose(sheet["pca1"].astype(float), parquet["pca1"], rtol=1e-15)
    assert sheet["recomendacion"].tolist() == parquet["recomendacion"].tolist()
    recs = list(wb["Recomendaciones"].values)
    assert recs[0][:3] == ("cluster", "Nombre", "Nivel de compromiso") and recs[0][-2:] == ("Acción", "Motivo")
    assert [r[1] for r in recs[1:]] == [*table["nombre"], "Todos los usuarios"]
    assert [r[3] for r in recs[1:]] == [*table["size"], len(users)]
    ks = list(wb["Eleccion_k"].values)
    assert ks[0][0] == "k" and [r[0] for r in ks[1:5]] == [2, 3, 4, 5]
    assert [r[6] for r in ks[1:5]] == [None, "sí", None, None] and ks[6][1] == "elbow"


def sheet_cells(path) -> dict:
    wb = openpyxl.load_workbook(path)
    return {name: [[(c.value, c.data_type) for c in row] for row in wb[name].iter_rows()] for name in wb.sheetnames}


@pytest.mark.parametrize("limit", [None, 50], ids=["every-user", "hashed-sample"])
@pytest.mark.parametrize("text_ids", [False, True], ids=["int-ids", "text-ids"])
@pytest.mark.parametrize("scored_rows", [100_000, 20], ids=["all-parts-at-once", "parts-gathered-by-20"])
def test_a_workbook_scored_from_the_users_layer_equals_the_one_read_from_the_results(dask_client, tmp_path, cfg,
                                                                                   clean_users, limit, text_ids,
                                                                                   scored_rows, monkeypatch):
    """publish writes the workbook from the users layer while the per-user results are written: every cell
    (value and type) of every sheet must be what reading those results gives, however many parts' users
    are scored at a time (workbook.SCORED_ROWS; 20 makes the 50-user sample end a gathering mid-way)."""
    monkeypatch.setattr(workbook_module, "SCORED_ROWS", scored_rows)
    users = clean_users.assign(Id=clean_users["Id"].map(lambda v: f"u{v}")) if text_ids else clean_users
    write_parts(users, tmp_path / "users")
    result = fake_result(users, cfg)
    table = segment_table(segment_profiles(scored_parts(tmp_path / "users", result, cfg), result.k), cfg)
    if limit:
        cfg["report"]["excel_max_rows"] = limit
    out = write_user_results(tmp_path / "users", tmp_path / "R", result, table, cfg)
    read = write_results_xlsx(out, tmp_path / "read.xlsx", table, result.k_table, cfg, k_reason="elbow")
    scoring = user_scoring(tmp_path / "users", result, table, cfg)
    scored = write_results_xlsx(out, tmp_path / "scored.xlsx", table, result.k_table, cfg, k_reason="elbow",
                                scoring=scoring)
    expected, got = sheet_cells(read), sheet_cells(scored)
    assert got == expected
    assert len(got["Clusters"]) == (limit + 1 if limit else len(users) + 1)


def test_a_k_search_on_a_sample_says_so_in_the_k_sheet_headers(dask_client, tmp_path, cfg, setup):
    _, folder, result, table = setup
    out = write_user_results(folder, tmp_path, result, table, cfg)
    plain = write_results_xlsx(out, tmp_path / "p.xlsx", table, result.k_table, cfg)
    sampled = write_results_xlsx(out, tmp_path / "s.xlsx", table, result.k_table, cfg, lang="en", sample_rows=4000)
    assert next(openpyxl.load_workbook(plain)["Eleccion_k"].values)[1] == "inercia"
    header = next(openpyxl.load_workbook(sampled)["Eleccion_k"].values)
    assert header[1] == "inertia (sample of 4,000 users)" and header[5] == "sizes (sample of 4,000 users)"


def test_formula_looking_text_is_written_as_text(dask_client, tmp_path, cfg, clean_users):
    users = clean_users.copy()
    users["Id"] = users["Id"].astype(str)
    users.loc[0, "Id"], users.loc[1, "Id"], users.loc[2, "Id"] = "=1+1", "@x", "-2+3"
    write_parts(users, tmp_path / "users")
    result = fake_result(users, cfg)
    table = segment_table(segment_profiles(scored_parts(tmp_path / "users", result, cfg), result.k), cfg)
    table["nombre"] = ["@x", "=HYPERLINK(\"http://e.x\")", "+1"]
    out = write_user_results(tmp_path / "users", tmp_path, result, table, cfg)
    assert pd.read_parquet(out)["Id"].map(type).eq(str).all()
    path = write_results_xlsx(out, tmp_path / "r.xlsx", table, result.k_table, cfg)
    ws = openpyxl.load_workbook(path)["Clusters"]
    cells = {row[0].value: row for row in ws.iter_rows(min_row=2)}
    for text in ("=1+1", "@x", "-2+3"):
        assert cells[text][0].data_type == "s"
    segment_cells = [row[14] for row in ws.iter_rows(min_row=2)]
    assert {c.value for c in segment_cells} == {"@x", "=HYPERLINK(\"http://e.x\")", "+1"}
    assert all(c.data_type == "s" for c in segment_cells)


def test_too_many_users_for_excel_gives_a_hashed_sample_and_a_note(dask_client, tmp_path, cfg, setup):
    users, folder, result, table = setup
    cfg["report"]["excel_max_rows"] = 50
    out = write_user_results(folder, tmp_path, result, table, cfg)
    path = write_results_xlsx(out, tmp_path / "r.xlsx", table, result.k_table, cfg)
    rows = list(openpyxl.load_workbook(path)["Clusters"].values)
    assert rows[0][0].startswith("MUESTRA: esta hoja tiene 49 de 600 usuarios") and str(out) in rows[0][0]
    assert list(rows[1]) == RESULT_COLUMNS and len(rows) == 2 + 49
    u = hash_uniform(users["Id"], cfg["model"]["seed"])
    assert {r[0] for r in rows[2:]} == set(users["Id"].to_numpy()[np.argsort(u)[:49]])


def test_model_files_round_trip_and_metadata(tmp_path, cfg, clean_users):
    result = fake_result(clean_users, cfg)
    paths = write_model_files(tmp_path, result, {"seed": 42, "input_sha256": "ab" * 32})
    meta = json.loads(paths["metadata"].read_text())
    for name in ("modelo_clustering.pkl", "escalador.pkl", "modelo.json"):
        assert meta["files"][name]["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    assert meta["k"] == 3 and meta["features"] == result.feature_names and meta["input_sha256"] == "ab" * 32
    assert {"scikit-learn", "dask", "pandas", "numpy"} <= set(meta["library_versions"]) and meta["created_at"]
    assert meta["metrics"]["inertia"] == pytest.approx(result.inertia) and meta["seed"] == 42
    model, scaler = load_model_files(tmp_path)
    x = feature_frame(clean_users, cfg["features"])
    np.testing.assert_array_equal(model.predict(scaler.transform(x)), result.model.predict(result.scaler.transform(x)))


def test_plain_json_model_predicts_identically(tmp_path, cfg, clean_users):
    result = fake_result(clean_users, cfg, k=4)
    write_model_files(tmp_path, result, {})
    model, scaler = load_plain_model(tmp_path)
    x = feature_frame(make_clean_users(2000, seed=9), cfg["features"])
    np.testing.assert_array_equal(scaler.transform(x), result.scaler.transform(x))
    np.testing.assert_array_equal(model.predict(scaler.transform(x)), result.model.predict(result.scaler.transform(x)))


def test_tampered_or_unverified_pickles_are_refused(tmp_path, cfg, clean_users):
    result = fake_result(clean_users, cfg)
    paths = write_model_files(tmp_path, result, {})
    with open(paths["scaler"], "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(InputDataError, match=r"escalador\.pkl: refusing to unpickle, its SHA-256 does not match"):
        load_model_files(tmp_path)
    paths["metadata"].unlink()
    with pytest.raises(InputDataError, match=r"modelo_clustering\.pkl: refusing to unpickle, no SHA-256"):
        load_model_files(tmp_path)
    with pytest.warns(UserWarning, match="unverified"):
        model, _ = load_model_files(tmp_path, trust_unverified=True)
    np.testing.assert_array_equal(model.cluster_centers_, result.model.cluster_centers_)


# ---------------------------------------------------------------- workbook written by rustpy-xlsxwriter (issue 12)
NUMBER_COLUMNS = RESULT_COLUMNS[1:-3]


def _clusters(path, head: int):
    """Sheet Clusters read with openpyxl (cells) and python-calamine (values), data rows only."""
    from python_calamine import CalamineWorkbook

    ws = openpyxl.load_workbook(path)["Clusters"]
    cells = [list(row) for row in ws.iter_rows()]
    values = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("Clusters").to_python(skip_empty_area=False)
    return cells[:head], cells[head:], values[:head], values[head:]


def test_workbook_clusters_sheet_equals_the_parquet_rows_values_and_types(dask_client, tmp_path, cfg, setup):
    import pyarrow as pa
    import pyarrow.parquet as pq

    users, folder, result, table = setup
    out = write_user_results(folder, tmp_path, result, table, cfg)
    first = min(out.glob("*.parquet"))
    stored = pq.read_table(first)  # text comes back dictionary-encoded: the writer must decode it
    assert pa.types.is_dictionary(stored.schema.field("segmento").type)
    frame = stored.to_pandas()
    frame.loc[0, "hour"], frame.loc[1, "pca2"] = np.nan, np.nan  # missing numbers are blank cells
    pq.write_table(pa.Table.from_pandas(frame, schema=stored.schema, preserve_index=False), first)
    path = write_results_xlsx(out, tmp_path / "r.xlsx", table, result.k_table, cfg)
    head, cells, cal_head, values = _clusters(path, 1)
    parquet = pd.concat([pd.read_parquet(p) for p in sorted(out.glob("*.parquet"))], ignore_index=True)
    assert [c.value for c in head[0]] == RESULT_COLUMNS and cal_head[0] == RESULT_COLUMNS
    assert len(cells) == len(values) == len(parquet) == len(users)
    assert all(len(row) == len(RESULT_COLUMNS) for row in cells + values)
    for j, col in enumerate(RESULT_COLUMNS):
        want = parquet[col]
        got = [row[j] for row in cells]
        assert not any(c.data_type in ("f", "d") for c in got), col
        if col in NUMBER_COLUMNS or col == "Id":
            present = want.notna().to_numpy()
            assert all(c.data_type == "n" for c in got), col
            assert all(c.value is None for c, p in zip(got, present) if not p), col
            for reader in ([c.value for c in got], [row[j] for row in values]):
                have = [v for v, p in zip(reader, present) if p]
                assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in have), col
                # exact: shortest round-trip decimals, integers as integral doubles
                np.testing.assert_array_equal(np.array(have, dtype=float), want[present].to_numpy(dtype=float))
        else:
            assert all(c.data_type == "s" for c in got), col
            assert [c.value for c in got] == [row[j] for row in values] == want.astype(str).tolist(), col
    assert sum(1 for row in cells if row[7].value is None) >= 1 and values[0][7] == ""


def test_formula_looking_text_stays_text_in_every_sheet(dask_client, tmp_path, cfg, clean_users):
    from python_calamine import CalamineWorkbook

    tricky = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "=HYPERLINK(\"http://e.x\")"]
    users = clean_users.copy()
    users["Id"] = users["Id"].astype(str)
    users.loc[:len(tricky) - 1, "Id"] = tricky
    write_parts(users, tmp_path / "users")
    result = fake_result(users, cfg)
    table = segment_table(segment_profiles(scored_parts(tmp_path / "users", result, cfg), result.k), cfg)
    table["nombre"] = ["=1+1", "@cmd", "-2+3"]
    out = write_user_results(tmp_path / "users", tmp_path, result, table, cfg)
    path = write_results_xlsx(out, tmp_path / "r.xlsx", table, result.k_table, cfg, k_reason="=SUM(A1:A9)")
    wb = openpyxl.load_workbook(path)
    every = [c for ws in wb for row in ws.iter_rows() for c in row if c.value is not None]
    assert not [c.coordinate for c in every if c.data_type == "f"]
    ids = {row[0].value: row[0] for row in wb["Clusters"].iter_rows(min_row=2)}
    for text in tricky:
        assert ids[text].data_type == "s" and ids[text].value == text
    assert [r[1].value for r in wb["Recomendaciones"].iter_rows(min_row=2, max_row=4)] == ["=1+1", "@cmd", "-2+3"]
    assert all(r[1].data_type == "s" for r in wb["Recomendaciones"].iter_rows(min_row=2))
    assert [c.value for c in list(wb["Eleccion_k"].iter_rows())[-1][:2]] == ["Motivo de la elección", "=SUM(A1:A9)"]
    calamine = CalamineWorkbook.from_path(str(path))
    assert set(tricky) <= {row[0] for row in calamine.get_sheet_by_name("Clusters").to_python()}


@pytest.mark.parametrize("below", [0, 1, 551])
def test_sampled_workbook_writes_the_note_and_exactly_that_many_rows(dask_client, tmp_path, cfg, setup, below):
    """excel_max_rows = users − below: all users and no note at 0; else a note row + limit − 1 sampled users."""
    users, folder, result, table = setup
    limit = len(users) - below
    cfg["report"]["excel_max_rows"] = limit
    out = write_user_results(folder, tmp_path, result, table, cfg)
    path = write_results_xlsx(out, tmp_path / "r.xlsx", table, result.k_table, cfg, lang="en")
    sampled = below > 0
    head, cells, cal_head, values = _clusters(path, 2 if sampled else 1)
    assert [c.value for c in head[-1]] == RESULT_COLUMNS and cal_head[-1] == RESULT_COLUMNS
    assert len(cells) == len(values) == (limit - 1 if sampled else limit)
    if sampled:
        note = head[0][0].value
        assert note.startswith(f"SAMPLE: this sheet holds {limit - 1:,} of {len(users):,} users") and str(out) in note
        assert cal_head[0][0] == note and head[0][0].data_type == "s"
        u = hash_uniform(users["Id"], cfg["model"]["seed"])
        assert {row[0].value for row in cells} == set(users["Id"].to_numpy()[np.argsort(u)[:limit - 1]])
    else:
        assert {row[0].value for row in cells} == set(users["Id"])


def test_small_sheets_keep_their_number_formats_and_a_header_without_k_table(dask_client, tmp_path, cfg, setup):
    _, folder, result, table = setup
    out = write_user_results(folder, tmp_path, result, table, cfg)
    path = write_results_xlsx(out, tmp_path / "r.xlsx", table, [], cfg)  # as `mailseg score` writes it
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Clusters", "Recomendaciones", "Eleccion_k"]
    assert [c.value for c in next(wb["Eleccion_k"].iter_rows())] == ["k", "inercia", "silueta", "calinski_harabasz",
                                                                      "davies_bouldin", "tamaños", "elegida"]
    assert wb["Eleccion_k"].max_row == 1
    recs = wb["Recomendaciones"]
    header = [c.value for c in next(recs.iter_rows())]
    formats = {}
    for row in recs.iter_rows(min_row=2):
        for name, cell in zip(header, row):
            if isinstance(cell.value, (int, float)):
                formats.setdefault(name, set()).add(cell.number_format)
    assert formats["Proporción"] == formats["Tasa de compra"] == formats["Tasa de rebote"] == {"0.0%"}
    assert formats["Envíos (media)"] == formats["Clics por apertura"] == formats["Silueta media"] == {"0.00"}
    assert formats["Usuarios"] == formats["cluster"] == {"General"}
    widths = {i: d.width for d in recs.column_dimensions.values() for i in range(d.min, d.max + 1)}
    assert [i for i, w in widths.items() if w > 20] == [2, 18, 19]  # name, action, reason
    assert widths[2] > 30 and widths[18] > 70 and widths[19] > 70
    clusters = wb["Clusters"]
    widths = {i: d.width for d in clusters.column_dimensions.values() for i in range(d.min, d.max + 1)}
    header = [c.value for c in next(clusters.iter_rows())]
    assert all(widths[i] >= len(name) for i, name in enumerate(header, 1))  # every header readable
    assert widths[header.index("segmento") + 1] > 30 and widths[header.index("recomendacion") + 1] > 80


def test_an_error_reading_a_part_is_raised_as_it_is_and_leaves_no_workbook(dask_client, tmp_path, cfg, setup,
                                                                            monkeypatch):
    from mailseg_dist.outputs import workbook as export

    _, folder, result, table = setup
    out = write_user_results(folder, tmp_path, result, table, cfg)
    batches = export._batches

    def failing(files, columns):
        yield from list(batches(files, columns))[:1]
        raise InputDataError("part-00002.parquet: unreadable")

    monkeypatch.setattr(export, "_batches", failing)
    with pytest.raises(InputDataError, match="unreadable"):
        write_results_xlsx(out, tmp_path / "r.xlsx", table, result.k_table, cfg)
    assert not list(tmp_path.glob("*r.xlsx*"))


@pytest.mark.parametrize("threshold", [None, 1e-9], ids=["with-margin", "margin-fell-short"])
def test_sample_cut_is_the_hash_of_the_size_th_user_over_every_part(monkeypatch, cfg, users_parquet, clean_users,
                                                                    threshold):
    """The workbook's cut keeps only hashes under sampling.sample_threshold as it reads; when fewer than
    `size` fall under it (forced by a tiny threshold), it reads every hash again."""
    if threshold is not None:
        monkeypatch.setattr(workbook_module, "sample_threshold", lambda size, total, factor: threshold)
    files = sorted(users_parquet.glob("*.parquet"))  # four parts, one empty
    hashes = np.sort(hash_uniform(clean_users["Id"], 42))
    for size in (1, 37, len(clean_users)):
        assert workbook_module._sample_cut(files, size, 42, len(clean_users)) == hashes[size - 1]
