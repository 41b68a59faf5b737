"""Locations (local paths, file:// and object-store URLs) and the object-store side of atomic writes and the lock.

The store is moto's S3 server on 127.0.0.1 (the `s3_server` fixture); s3fs talks to it
exactly as to S3. Each check is also made against the local-disk behaviour it mirrors.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from store_helpers import read_parquet_table
from upath import UPath

from mailseg_dist.core.atomic import (
    _host,
    atomic_dir,
    atomic_path,
    folder_lock,
    write_json,
)
from mailseg_dist.core.catalog import Catalog
from mailseg_dist.core.config import load_config
from mailseg_dist.core.errors import InputDataError, UsageError
from mailseg_dist.core.parquet import file_columns, frame_parts
from mailseg_dist.core.storage import (
    as_location,
    check_store,
    file_sha256,
    is_remote,
    local_copy,
    location,
    remove_tree,
    write_frame,
)
from mailseg_dist.inputs.readers import check_file


# ---------------------------------------------------------------- locations (no store needed)
def test_location_keeps_local_paths_local_and_object_stores_as_upaths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert location("d/x", "--out") == tmp_path / "d" / "x"
    assert location((tmp_path / "a b").as_uri(), "--out") == tmp_path / "a b"
    found = location("s3://bucket/data/users", "--data-dir")
    assert isinstance(found, UPath) and is_remote(found) and not is_remote(tmp_path)
    assert (str(found / "month=2026-01"), found.protocol) == ("s3://bucket/data/users/month=2026-01", "s3")
    assert as_location(str(found)) == found and as_location(tmp_path) == tmp_path
    assert as_location(Path("rel")) == tmp_path / "rel"  # absolute before it is sent to a worker


@pytest.mark.parametrize("url, message", [
    ("ftp://host/data", "--data-dir ftp://host/data: ftp:// is not a supported storage"),
    ("http://host/data", "http:// is not a supported storage"),
    ("abfss://container/data", "abfss:// is not a supported storage.*abfs://"),
    ("file://otherhost/srv", "found host 'otherhost'"),
])
def test_location_refuses_what_it_cannot_store_to_in_one_line(url, message):
    with pytest.raises(UsageError, match=message) as caught:
        location(url, "--data-dir")
    assert "\n" not in str(caught.value)


def test_location_names_the_package_a_store_needs(monkeypatch):
    real = fsspec.get_filesystem_class

    def without_gcsfs(protocol):
        if protocol == "gs":
            raise ImportError("Install gcsfs to access Google Storage")
        return real(protocol)

    monkeypatch.setattr(fsspec, "get_filesystem_class", without_gcsfs)
    with pytest.raises(UsageError, match=r"--out gs://b/x: gs:// needs the gcsfs package \(pip install gcsfs\)"):
        location("gs://b/x", "--out")


# ---------------------------------------------------------------- the store itself (moto on loopback)
def test_catalog_on_a_store_refuses_a_missing_bucket_at_the_door(bucket, s3_server):
    catalog = Catalog(load_config(), data_dir=f"{bucket}/data", out_dir=f"{bucket}/Resultados")
    assert str(catalog.users("2026-01")) == f"{bucket}/data/parquet/users/month=2026-01"
    with pytest.raises(UsageError, match=r"output folder s3://no-such-bucket-x/R: bucket 'no-such-bucket-x' "
                                         "not found"):
        Catalog(load_config(), out_dir="s3://no-such-bucket-x/R")


def test_an_unreachable_store_is_one_line(monkeypatch):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for name, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "x",
                        "AWS_SECRET_ACCESS_KEY": "x", "AWS_MAX_ATTEMPTS": "1", "AWS_EC2_METADATA_DISABLED": "true",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    path = UPath("s3://somewhere/out", skip_instance_cache=True, config_kwargs={"connect_timeout": 2,
                                                                               "retries": {"max_attempts": 1}})
    with pytest.raises(UsageError, match=r"^output folder s3://somewhere/out: storage did not answer") as caught:
        check_store(path, "output folder")
    assert "\n" not in str(caught.value)
    for worker_side_read in (check_file, file_sha256, lambda p: local_copy(p).__enter__()):
        with pytest.raises(UsageError, match=r"^s3://somewhere/in.csv: storage did not answer"):
            worker_side_read(path.parent / "in.csv")


def test_atomic_path_on_a_store_replaces_the_object_whole_or_not_at_all(bucket):
    target = as_location(f"{bucket}/Resultados/run_summary.json")
    write_json(target, {"run": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target, suffix=".json") as tmp:
            tmp.write_text('{"run": 2, "half')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"run": 1}  # the failed writer changed nothing
    write_json(target, {"run": 3})
    assert json.loads(target.read_text()) == {"run": 3}
    assert [p.name for p in target.parent.iterdir()] == ["run_summary.json"]  # no temporary objects


def test_atomic_dir_on_a_store_swaps_the_folder_and_leaves_no_temporaries(bucket):
    final = as_location(f"{bucket}/data/users/month=2026-01")
    for version, names in ((1, ["part-00000", "part-00001", "part-00002"]), (2, ["part-00000"])):
        with atomic_dir(final) as tmp:
            assert is_remote(tmp) and tmp.name.startswith(".month=2026-01.")
            for name in names:
                write_frame(pd.DataFrame({"v": [version]}), tmp / f"{name}.parquet")
        assert sorted(p.name for p in final.iterdir()) == [f"{n}.parquet" for n in names]
    assert read_parquet_table(final / "part-00000.parquet").to_pydict() == {"v": [2]}
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            write_frame(pd.DataFrame({"v": [3]}), tmp / "part-00000.parquet")
            raise RuntimeError("failed mid-layer")
    assert read_parquet_table(final / "part-00000.parquet").to_pydict() == {"v": [2]}
    assert [p.name for p in final.parent.iterdir()] == ["month=2026-01"]


def test_atomic_dir_on_a_store_keeps_the_new_version_when_its_copy_fails(bucket, monkeypatch):
    final = as_location(f"{bucket}/data/users/month=2026-01")
    with atomic_dir(final) as tmp:
        write_frame(pd.DataFrame({"v": [1]}), tmp / "part-00000.parquet")
    assert final.fs is as_location(str(final)).fs  # fsspec hands every caller the same instance

    def copy_fails(*args, **kwargs):
        raise OSError("store went away mid-copy")

    monkeypatch.setattr(final.fs, "copy", copy_fails)
    with pytest.raises(OSError, match="mid-copy"):
        with atomic_dir(final) as tmp:
            write_frame(pd.DataFrame({"v": [2]}), tmp / "part-00000.parquet")
    assert read_parquet_table(final / "part-00000.parquet").to_pydict() == {"v": [1]}  # old version intact
    kept = [p for p in final.parent.iterdir() if p.name.endswith(".tmpdir")]
    assert len(kept) == 1 and read_parquet_table(kept[0] / "part-00000.parquet").to_pydict() == {"v": [2]}


def test_atomic_dir_on_a_store_removes_a_dead_writers_leftovers(bucket):
    final = as_location(f"{bucket}/data/raw/month=2026-01")
    dead = final.parent / f".month=2026-01.999999999@{_host()}.abc123.tmpdir"
    live = final.parent / f".month=2026-01.{os.getpid()}@{_host()}.def456.tmpdir"
    for leftover in (dead, live):
        write_frame(pd.DataFrame({"v": [0]}), leftover / "part-00000.parquet")
    with atomic_dir(final) as tmp:
        write_frame(pd.DataFrame({"v": [1]}), tmp / "part-00000.parquet")
    names = sorted(p.name for p in final.parent.iterdir())
    assert names == sorted([live.name, "month=2026-01"])  # a live writer's temporary is never touched


def test_folder_lock_on_a_store_refuses_a_second_job_and_names_the_holder(bucket):
    folder = as_location(f"{bucket}/Resultados")
    with folder_lock(folder, "mailseg run"):
        with pytest.raises(UsageError, match=rf"{folder}: locked by another mailseg job \(pid {os.getpid()} on "):
            with folder_lock(folder, "mailseg run"):
                pass
    assert not (folder / ".mailseg.lock").exists()
    # a lock left by a killed job on this host is taken over
    (folder / ".mailseg.lock").write_text(json.dumps({"pid": 999999999, "host": socket.gethostname()}))
    with folder_lock(folder, "mailseg run") as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_reading_an_input_object_names_its_url_not_the_download(bucket, tmp_path):
    for name, content in (("empty.csv", b""), ("junk.xlsx", b"not a workbook"), ("ok.csv", b"Id,send\n1,2\n")):
        as_location(f"{bucket}/in/{name}").write_bytes(content)
    with pytest.raises(InputDataError, match=rf"^{bucket}/in/empty.csv: empty file \(0 bytes\)"):
        check_file(f"{bucket}/in/empty.csv")
    with pytest.raises(InputDataError, match=rf"^{bucket}/in/nothing.csv: no such file"):
        check_file(f"{bucket}/in/nothing.csv")
    with pytest.raises(InputDataError, match=rf"^{bucket}/in: is a directory"):
        check_file(f"{bucket}/in")
    from mailseg_dist.inputs.readers import read_chunks

    with pytest.raises(InputDataError, match=rf"^{bucket}/in/junk.xlsx: is not an xlsx workbook"):
        with local_copy(f"{bucket}/in/junk.xlsx") as local:
            read_chunks(local, load_config()["ingest"])
    with local_copy(f"{bucket}/in/ok.csv") as local:
        assert not is_remote(local) and local.read_bytes() == b"Id,send\n1,2\n"
    assert not local.exists()  # the download is removed after reading
    with local_copy(tmp_path) as same:
        assert same == tmp_path


def test_remove_tree_removes_a_prefix_and_tolerates_absence(bucket):
    folder = as_location(f"{bucket}/x")
    write_frame(pd.DataFrame({"v": [1]}), folder / "a" / "p.parquet")
    remove_tree(folder)
    remove_tree(folder)
    assert not folder.exists()


def test_catalog_lists_the_months_in_a_store(bucket):
    catalog = Catalog(load_config(), data_dir=f"{bucket}/data")
    for month in ("2026-02", "2026-01"):
        write_frame(pd.DataFrame({"v": [1]}), catalog.users(month) / "part-00000.parquet")
    write_frame(pd.DataFrame({"v": [1]}), catalog.users("2026-01").parent / "month=junk" / "part-00000.parquet")
    assert catalog.months() == ["2026-01", "2026-02"]


def _encodings(path) -> dict:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata.row_group(0)
    return {meta.column(i).path_in_schema: set(meta.column(i).encodings) for i in range(meta.num_columns)}


def test_plain_columns_are_written_without_a_dictionary_and_read_back_the_same(tmp_path, clean_users):
    dictionary = {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
    write_frame(clean_users, tmp_path / "plain.parquet", plain=("Id", "source_row"))
    write_frame(clean_users, tmp_path / "default.parquet")
    plain, default = _encodings(tmp_path / "plain.parquet"), _encodings(tmp_path / "default.parquet")
    assert not plain["Id"] & dictionary and not plain["source_row"] & dictionary
    assert default["Id"] & dictionary  # pyarrow's default tries a dictionary first
    assert all(plain[c] & dictionary for c in clean_users.columns if c not in ("Id", "source_row"))
    for name in ("plain", "default"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"{name}.parquet"), clean_users)
    write_frame(clean_users[["Id"]], tmp_path / "only.parquet", plain=("Id",))  # no column left to encode
    assert not _encodings(tmp_path / "only.parquet")["Id"] & dictionary


def test_frame_parts_read_each_part_file_as_pandas_reads_it(users_parquet, clean_users):
    import dask

    columns = ["Id", "send", "hour"]
    parts = dask.compute(*frame_parts(users_parquet, columns), scheduler="sync")
    files = sorted(users_parquet.glob("*.parquet"))
    assert len(parts) == len(files) == 4 and len(parts[1]) == 0  # the empty part file is a part
    for part, path in zip(parts, files):
        pd.testing.assert_frame_equal(part, pd.read_parquet(path, columns=columns))
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), clean_users[columns])
    assert file_columns(files[0]) == list(clean_users.columns)


def test_frame_parts_of_a_dask_frame_are_its_partitions(clean_users_ddf):
    import dask

    parts = dask.compute(*frame_parts(clean_users_ddf, ["Id", "open"]), scheduler="sync")
    expected = dask.compute(*clean_users_ddf.to_delayed(), scheduler="sync")
    assert len(parts) == clean_users_ddf.npartitions
    for part, whole in zip(parts, expected):
        pd.testing.assert_frame_equal(part, whole[["Id", "open"]])
