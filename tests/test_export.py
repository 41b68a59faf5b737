"""Per-user results, the results workbook and the model files, on small multi-partition data."""

from __future__ import annotations

import hashlib
import json
import types

import numpy as np
import openpyxl
import pandas as pd
import pytest
from conftest import make_clean_users
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import euclidean_distances, silhouette_samples
from sklearn.preprocessing import StandardScaler

from mailseg_dist.core.config import load_config
from mailseg_dist.core.errors import InputDataError
from mailseg_dist.inputs.sampling import hash_uniform
from mailseg_dist.model.features import feature_frame
from mailseg_dist.outputs.export import (
    RESULT_COLUMNS,
    load_model_files,
    load_plain_model,
    scored_users,
    write_model_files,
    write_results_xlsx,
    write_user_results,
)
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
    table = segment_table(segment_profiles(scored_users(users_parquet, result, cfg), result.k), cfg)
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


def test_formula_looking_text_is_written_as_text(dask_client, tmp_path, cfg, clean_users):
    users = clean_users.copy()
    users["Id"] = users["Id"].astype(str)
    users.loc[0, "Id"], users.loc[1, "Id"], users.loc[2, "Id"] = "=1+1", "@x", "-2+3"
    write_parts(users, tmp_path / "users")
    result = fake_result(users, cfg)
    table = segment_table(segment_profiles(scored_users(tmp_path / "users", result, cfg), result.k), cfg)
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
