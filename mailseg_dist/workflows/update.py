"""Monthly update: refit on the new month from last month's segments, keeping their ids.

The previous model (verified by SHA-256, read from plain JSON, never unpickled)
gives k and its centres in feature units. The new month gets its own scaler;
the old centres are put in the new scaled space and Lloyd starts from them, so
centre j of the new model grew out of centre j of the old one. An optimal
one-to-one matching of old and new centres (Hungarian, squared distances)
checks that: if Lloyd let two segments swap places, the new centres are
reordered so that each id keeps following its segment. The summary's `update`
block says, per id, how far the centre moved and how name and share changed.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from mailseg_dist.core.catalog import PLAIN_JSON, SUMMARY_JSON
from mailseg_dist.core.errors import UsageError
from mailseg_dist.core.storage import as_location, file_sha256, read_json
from mailseg_dist.model.drift import transitions

log = logging.getLogger("mailseg")


def previous_segments(model_dir: Path, cfg: dict, trust_unverified: bool) -> SimpleNamespace:
    """k, centres in feature units, names and shares of the model in `model_dir` (verified, not unpickled)."""
    from mailseg_dist.workflows.score import load_scoring_model

    saved = load_scoring_model(model_dir, cfg, trust_unverified)
    centers = saved.model.cluster_centers_ * saved.scaler.scale_ + saved.scaler.mean_
    table = saved.segments
    sizes = saved.meta.get("metrics", {}).get("cluster_sizes", {})
    return SimpleNamespace(
        k=saved.k, centers=np.asarray(centers, dtype=np.float64), model_dir=str(model_dir),
        sha256=file_sha256(as_location(model_dir) / PLAIN_JSON), scaler=saved.scaler, month=saved.meta.get("month"),
        counts=np.array([int(sizes.get(str(j), sizes.get(j, 0))) for j in range(saved.k)], dtype=np.int64),
        names={int(c): str(n) for c, n in table["nombre"].items()},
        shares={int(c): float(s) for c, s in table["share"].items()})


def center_shift(previous: SimpleNamespace, scaler, centers: np.ndarray) -> np.ndarray:
    """How far each id's centre moved, in the new scaler's units (the previous centres put in that space)."""
    old_scaled = (previous.centers - scaler.mean_) / scaler.scale_
    return np.sqrt(((old_scaled - centers) ** 2).sum(axis=1))


def segment_silhouettes(result) -> dict[int, float]:
    """Mean silhouette of each segment's sampled users (segments with none in the sample left out)."""
    return {int(c): float(np.mean(v)) for c, v in result.silhouette_by_cluster.items() if len(v)}


def update_block(previous: SimpleNamespace, scaler, centers: np.ndarray, segments: list[dict],
                 reordered: bool) -> dict:
    """What changed since the previous model, per segment id (centre shift in the new scaled units)."""
    shift = center_shift(previous, scaler, centers)
    now = {s["cluster"]: s for s in segments}
    return {"previous_model": previous.model_dir, "previous_modelo_json_sha256": previous.sha256,
            "ids_reordered": reordered,
            "segments": [{"cluster": j, "previous_name": previous.names.get(j), "name": now.get(j, {}).get("name"),
                          "previous_share": _rounded(previous.shares.get(j)), "share": now.get(j, {}).get("share"),
                          "center_shift": round(float(shift[j]), 4)} for j in range(previous.k)]}


def _rounded(share):
    return None if share is None else round(share, 4)


def update_job(cfg: dict, catalog, client, previous: SimpleNamespace, data=None, month=None, replace=False,
               monitor=None, trust_unverified: bool = False) -> dict:
    """`mailseg update`: the new month ingested, refitted from `previous`, stored as a new version.

    The same month again with the same content on the current version changes nothing (every file stays
    byte-identical); other content for the current version's month is refused unless `replace`, which
    rebuilds that month from the version it was built on.
    """
    from mailseg_dist.workflows.run import config_digest, fit_stage, ingest_stage, write_stage
    from mailseg_dist.workflows.versions import current_record, promote, version_dir

    started = time.perf_counter()
    manifest = ingest_stage(cfg, catalog, client, data, month, replace)
    record, out = current_record(catalog.out_dir), catalog.out_dir
    parent = None if record is None else record["id"]
    if record is not None and record["month"] == manifest["month"]:
        if record["input_sha256"] == manifest["sha256"] and record.get("config_sha256") == config_digest(cfg) \
                and not replace:
            log.info("month %s is already applied from this content (version %s): nothing to do",
                     manifest["month"], record["id"])
            return {**read_json(as_location(out) / SUMMARY_JSON), "already_applied": True}
        if not replace:
            raise UsageError(f"{manifest['source']}: month {manifest['month']} was already applied from other "
                             f"content or settings (version {record['id']}); pass --replace to rebuild it from the version "
                             "it was built on")
        if record["kind"] != "update" or record.get("parent") is None:
            raise UsageError(f"month {manifest['month']} is the month the current model was fitted on (version "
                             f"{record['id']}, `mailseg run`): refit it with `mailseg run --replace` instead")
        parent = record["parent"]
        previous = previous_segments(version_dir(out, parent), cfg, trust_unverified)
    elif record is not None and record["month"] > manifest["month"]:
        raise UsageError(f"{manifest['source']}: month {manifest['month']} is older than the current version's "
                         f"month {record['month']} ({record['id']}); `mailseg rollback` to an earlier version first")
    done = _computed_before(out, manifest, parent, config_digest(cfg)) if not replace else None
    if done is not None:  # e.g. after a rollback: the same month, content and parent were already computed
        log.info("month %s from this content on %s is version %s: made current again", manifest["month"], parent,
                 done)
        return {**promote(out, done), "already_applied": True}
    result, table = fit_stage(manifest, cfg, client, previous)
    parent_dir = _parent_dir(out, parent, previous)
    changes = None if parent_dir is None else \
        partial(month_changes, parent_dir, previous, result, table, manifest, cfg)  # once usuarios/ is written
    return write_stage(result, table, manifest, cfg, out, client, previous, monitor, started, kind="update",
                       parent=parent, changes=changes)


def _parent_dir(out, parent: str | None, previous: SimpleNamespace):
    """The version folder the drift is measured against: the parent in `out`, or, when `out` is a new folder
    and the model came from another one (`--model-dir`), that folder's version the model was read from."""
    from mailseg_dist.core.catalog import VERSION_JSON
    from mailseg_dist.workflows.versions import version_dir

    if parent is not None:
        return version_dir(out, parent)
    source = as_location(previous.model_dir)
    return source if (source / VERSION_JSON).exists() else None


def month_changes(pdir, previous: SimpleNamespace, result, table, manifest: dict, cfg: dict,
                  results_dir) -> dict:
    """The drift report against the parent version in folder `pdir` (its stored bins, shares and labels):
    features' PSI, segment shares, who moved where (on the workers, from the parent's per-user results and
    the new ones in `results_dir`), the verdict, every stored month's shares."""
    from mailseg_dist.core.catalog import USERS_SUBDIR, VERSION_JSON
    from mailseg_dist.model.drift import drift_block
    from mailseg_dist.workflows.versions import lineage

    then = read_json(pdir / VERSION_JSON)
    moves = transitions(pdir / USERS_SUBDIR, results_dir) if (pdir / USERS_SUBDIR).exists() else None
    shift = center_shift(previous, result.scaler, result.centers)
    now_shares = {int(c): float(s) for c, s in table["share"].items()}
    now_names = {int(c): str(n) for c, n in table["nombre"].items()}
    block = drift_block(then["drift_reference"], result.sample, cfg["drift"], shares_then=previous.shares,
                        shares_now=now_shares, center_shift=dict(enumerate(shift.tolist())),
                        silhouette_then=then.get("silhouette_by_segment"),
                        silhouette_now=segment_silhouettes(result),
                        names_then=previous.names, names_now=now_names, transitions=moves,
                        month_then=then["month"], month_now=manifest["month"])
    history = [{"month": v["month"], "version": v["id"], "shares": {s["cluster"]: s["share"] for s in v["segments"]},
                "names": {s["cluster"]: s["name"] for s in v["segments"]}} for v in lineage(pdir.parent.parent, pdir.name)]
    history.append({"month": manifest["month"], "version": as_location(results_dir).parent.name,
                    "shares": now_shares, "names": now_names})  # results_dir is <version folder>/usuarios
    return {**block, "months": history}


def _computed_before(out, manifest: dict, parent: str | None, config_sha256: str) -> str | None:
    """The newest sealed update of this month from this content on this parent, if there is one."""
    from mailseg_dist.workflows.versions import list_versions

    same = [v["id"] for v in list_versions(out) if v["kind"] == "update" and v["month"] == manifest["month"]
            and v.get("parent") == parent and v["input_sha256"] == manifest["sha256"]
            and v.get("config_sha256") == config_sha256]
    return same[-1] if same else None
