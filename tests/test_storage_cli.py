"""`mailseg` end to end with every location in an object store (moto's S3 on 127.0.0.1).

The same commands run once on local folders and once on s3:// URLs; the store run
must give the same segments, model and per-user results, leave no temporary
object behind, and write nothing on the local disk of the folder it ran from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import (
    assert_one_line_error,
    mailseg,
    one_json_last_line,
    read_users,
    write_config,
)
from store_helpers import download, store_fs

pytestmark = pytest.mark.slow  # every test starts the `mailseg` command in a subprocess

SMALL = {"ingest": {"chunk_rows": 700}, "quality": {"bootstrap_rounds": 2}}
RUN_FACTS = ["k", "rows_in", "rows_kept", "rows_rejected", "rows_reconciled", "input_sha256", "segments"]


def local_names(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def ok(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    return one_json_last_line(proc)


def test_run_score_and_update_on_a_store_equal_the_same_on_disk(tmp_path, bucket):
    config = write_config(tmp_path / "small.yaml", SMALL)
    here = tmp_path / "empty-cwd"
    here.mkdir()
    for name, seed in (("jan.csv", 5), ("feb.csv", 6)):
        ok(mailseg("generate", "--rows", 3000, "--seed", seed, "--out", f"{bucket}/in/{name}", "--json", cwd=here))
        ok(mailseg("generate", "--rows", 3000, "--seed", seed, "--out", tmp_path / name, "--json", cwd=tmp_path))
        assert store_fs().cat_file(f"{bucket.removeprefix('s3://')}/in/{name}") == (tmp_path / name).read_bytes()

    common = ["--month", "2026-01", "--k", 4, "--config", config, "--json"]
    disk = ok(mailseg("run", tmp_path / "jan.csv", "--data-dir", tmp_path / "d", "--out", tmp_path / "R", *common,
                      cwd=tmp_path))
    store = ok(mailseg("run", f"{bucket}/in/jan.csv", "--data-dir", f"{bucket}/d", "--out", f"{bucket}/R", *common,
                       cwd=here))
    assert {k: store[k] for k in RUN_FACTS} == {k: disk[k] for k in RUN_FACTS}
    assert store["input"] == f"{bucket}/in/jan.csv" and store["rejects_path"].startswith(f"{bucket}/d/")

    got = tmp_path / "got"
    names = download(f"{bucket}/R", got / "R")
    assert names == local_names(tmp_path / "R")  # same files, figures and part files included
    assert not [n for n in names if Path(n).name.startswith(".")]  # no temporaries, no lock left
    assert json.loads((got / "R" / "modelo.json").read_text()) == json.loads((tmp_path / "R" / "modelo.json").read_text())
    by_id = lambda frame: frame.sort_values("Id", ignore_index=True)  # noqa: E731
    pd.testing.assert_frame_equal(by_id(read_users(got / "R" / "usuarios")), by_id(read_users(tmp_path / "R" / "usuarios")))
    manifest = json.loads(store_fs().cat_file(f"{bucket.removeprefix('s3://')}/d/manifests/month=2026-01.json"))
    assert manifest["rows_in"] == manifest["rows_kept"] + manifest["rows_rejected"] == 3000

    scored_disk = ok(mailseg("score", tmp_path / "feb.csv", "--model-dir", tmp_path / "R", "--data-dir", tmp_path / "d",
                             "--out", tmp_path / "S", "--json", cwd=tmp_path))
    scored_store = ok(mailseg("score", f"{bucket}/in/feb.csv", "--model-dir", f"{bucket}/R", "--data-dir", f"{bucket}/d",
                              "--out", f"{bucket}/S", "--json", cwd=here))
    assert scored_store["rows_kept"] == scored_disk["rows_kept"] == 3000
    download(f"{bucket}/S", got / "S")
    pd.testing.assert_frame_equal(by_id(read_users(got / "S" / "usuarios")), by_id(read_users(tmp_path / "S" / "usuarios")))

    updated = ok(mailseg("update", f"{bucket}/in/feb.csv", "--month", "2026-02", "--model-dir", f"{bucket}/R",
                         "--data-dir", f"{bucket}/d", "--out", f"{bucket}/F", "--config", config, "--json", cwd=here))
    assert updated["k"] == 4 and updated["update"]["previous_model"] == f"{bucket}/R/modelos/{store['version']}"
    # per id: the name read back from the model in the store, the share of the users the update wrote there
    previous_names = {s["cluster"]: s["name"] for s in store["segments"]}
    download(f"{bucket}/F", got / "F")
    shares = read_users(got / "F" / "usuarios", ["cluster"])["cluster"].value_counts(normalize=True)
    assert len(updated["update"]["segments"]) == 4
    for line in updated["update"]["segments"]:
        assert line["previous_name"] == previous_names[line["cluster"]], line
        assert line["share"] == pytest.approx(shares.get(line["cluster"], 0.0), abs=1e-4), line
    assert list(here.iterdir()) == []  # nothing was written on the local disk of the store runs


def test_a_missing_bucket_is_one_line_before_any_cluster(tmp_path, s3_server):
    done = mailseg("run", "--out", "s3://no-such-bucket-mailseg/R", "--data-dir", tmp_path / "d", cwd=tmp_path)
    assert_one_line_error(done, 2, "output folder s3://no-such-bucket-mailseg/R: bucket 'no-such-bucket-mailseg' "
                                   "not found")
    assert "LocalCluster" not in done.stderr and not (tmp_path / "d").exists()
