"""Shared fixtures: small multi-partition data (with an empty partition) and a Dask client."""

from __future__ import annotations

import os

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from mailseg_dist.inputs.schema import CLEAN_COLUMNS, SOURCE_ROW

os.environ.setdefault("MPLBACKEND", "Agg")


def make_clean_users(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """A clean-layer users table with three well separated groups (types as the clean layer stores them)."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 3, n)
    send = (1 + rng.poisson([2, 9, 3], (n, 3))[np.arange(n), group]).astype("int64")
    bounce = rng.poisson([0.1, 0.05, 1.5], (n, 3))[np.arange(n), group].astype("int64")
    opens = rng.poisson([0.2, 1.0, 0.05], (n, 3))[np.arange(n), group].astype("int64")
    click = rng.poisson([0.02, 0.3, 0.0], (n, 3))[np.arange(n), group].astype("int64")
    buyer = (rng.random(n) < np.array([0.8, 0.6, 0.15])[group]).astype("int64")
    df = pd.DataFrame({
        "Id": rng.permutation(10 * n)[:n].astype("int64"),
        "send": send, "bounce": bounce, "open": opens, "click": click,
        "Total": send + bounce + opens + click,
        "Comprador": buyer,
        "hour": np.clip(rng.normal([20, 15, 13], 1.5, (n, 3))[np.arange(n), group], 0, 23),
        "day_of_week": np.clip(rng.normal([1.4, 2.0, 1.6], 0.8, (n, 3))[np.arange(n), group], 0, 6),
    })
    df["engagement_score"] = (df["open"] + 2 * df["click"] + 3 * df["Comprador"]).astype("float64")
    df[SOURCE_ROW] = np.arange(2, n + 2, dtype="int64")
    return df[[*CLEAN_COLUMNS, SOURCE_ROW]]


def split_with_empty(df: pd.DataFrame, nparts: int = 4) -> dd.DataFrame:
    """`nparts` partitions of uneven size, the second one empty."""
    bounds = np.linspace(0, len(df), nparts, dtype=int)
    pieces = [df.iloc[:bounds[1]], df.iloc[0:0]] + [df.iloc[bounds[i]:bounds[i + 1]] for i in range(1, nparts - 1)]
    return dd.from_delayed([dask.delayed(p.reset_index(drop=True)) for p in pieces], meta=df.iloc[0:0])


@pytest.fixture
def clean_users() -> pd.DataFrame:
    return make_clean_users()


@pytest.fixture
def clean_users_ddf(clean_users) -> dd.DataFrame:
    return split_with_empty(clean_users)


@pytest.fixture
def users_parquet(tmp_path, clean_users):
    """The clean layer on disk: four part files, one of them empty."""
    folder = tmp_path / "users" / "month=2026-01"
    folder.mkdir(parents=True)
    bounds = np.linspace(0, len(clean_users), 4, dtype=int)
    pieces = [clean_users.iloc[:bounds[1]], clean_users.iloc[0:0], clean_users.iloc[bounds[1]:bounds[2]],
              clean_users.iloc[bounds[2]:]]
    for i, piece in enumerate(pieces):
        piece.to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    return folder


@pytest.fixture(scope="session")
def dask_client():
    """A small in-process distributed client (threads), shared by the session."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                      protocol="tcp", host="127.0.0.1") as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 for the session; this process's environment points at it meanwhile
    (so s3fs here, and the processes the tests start, reach it like a real store)."""
    from store_helpers import S3Server

    server = S3Server()
    saved = {name: os.environ.get(name) for name in server.env}
    os.environ.update(server.env)
    try:
        yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.close()


@pytest.fixture
def bucket(s3_server) -> str:
    """A fresh bucket's s3:// URL."""
    return s3_server.new_bucket()
