"""Duplicate user Ids across the parts of the clean pass, found without coercing any part twice.

The clean pass (ingest.clean_layer) writes each part's valid rows as users at once and reports, per
part, the range of its valid Ids and the Ids repeated inside it (→ their lowest source row). Then:
1. only parts whose Id ranges overlap (inputs.overlap) are compared: the Id column of their
   written users parts, split by hash(Id) into buckets (core.id_buckets.repeated_ids), each
   bucket's Ids seen twice or more, then, only when there are some, their lowest source row; Ids
   repeated inside any other part come from its summary;
2. a part that may hold a later copy of a repeated Id is cleaned again with those first rows (its
   later copies go to the ledger naming the row kept); every other part stays as written.
A file without repeated Ids (the usual case) costs one read of the Id column of the overlapping
parts, and one exported in Id order costs nothing; the old way coerced every part twice (10M users:
clean 18.5 s, of which about 8 s was the first coercion and the Id hash aggregation).
"""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd

from mailseg_dist.core.id_buckets import repeated_ids
from mailseg_dist.core.parquet import table_columns
from mailseg_dist.core.progress import compute
from mailseg_dist.core.storage import open_parquet
from mailseg_dist.inputs.overlap import overlapping
from mailseg_dist.inputs.schema import ID, SOURCE_ROW

NO_DUPLICATES = pd.Series(dtype="int64")


def part_summary(valid: pd.DataFrame) -> dict:
    """What the duplicate check needs of one part's valid rows: their Id range and inside repeats."""
    ids = valid[ID]
    if len(ids) == 0:
        return {"id_range": None, "repeated": NO_DUPLICATES}
    twice = ids.duplicated(keep=False).to_numpy()
    repeated = valid[twice].groupby(ID)[SOURCE_ROW].min() if twice.any() else NO_DUPLICATES
    return {"id_range": (ids.min(), ids.max()), "repeated": repeated}


def _part_columns(users_part: str, columns: list[str]) -> dict:
    """Columns of one written users part as arrays."""
    with open_parquet(users_part) as parquet:
        return table_columns(parquet.read(columns=columns), columns)


def _first_rows_of(users_part: str, repeated: np.ndarray) -> pd.Series:
    """Id → lowest source row in one users part, for the `repeated` Ids it holds."""
    columns = _part_columns(users_part, [ID, SOURCE_ROW])
    frame = pd.DataFrame(columns)[pd.Index(columns[ID]).isin(repeated)]
    return frame.groupby(ID)[SOURCE_ROW].min()


def _repeated_across(files: list[str], rows: int, buckets: int | None = None) -> pd.Series:
    """Ids seen in more than one row of these users parts (`rows` in all, as the clean counted them) →
    lowest source row (empty when none).

    The repeated Ids come from core.id_buckets.repeated_ids (hash buckets of the Id column, 8 bytes a row
    held until its bucket is checked; `buckets`: theirs); their source rows (few, usually none) from a
    second compute."""
    ids = [dask.delayed(_part_columns, pure=True)(f, [ID])[ID] for f in files]
    repeated = repeated_ids(ids, rows, buckets)
    if not len(repeated):
        return NO_DUPLICATES
    repeated = dask.delayed(repeated, pure=True)  # one key every task reads, not a copy in each
    per_part = compute(*[dask.delayed(_first_rows_of, pure=True)(f, repeated) for f in files])
    return pd.concat(per_part).groupby(level=0).min()


def first_rows(summaries: list[dict], users_files: list[str]) -> tuple[pd.Series, list[int], int]:
    """(Id → lowest source row for every repeated Id, positions of the parts that may hold a later copy,
    how many parts were compared because their Id ranges overlap).

    `summaries[i]` (part_summary, with the "kept" rows written to the part) and `users_files[i]` describe
    part i."""
    shared = overlapping([s["id_range"] for s in summaries])
    inside = [i for i, s in enumerate(summaries) if len(s["repeated"]) and i not in set(shared)]
    found = [summaries[i]["repeated"] for i in inside]
    if shared:
        found.append(_repeated_across([users_files[i] for i in shared], sum(summaries[i]["kept"] for i in shared)))
    found = [f for f in found if len(f)]
    if not found:
        return NO_DUPLICATES, [], len(shared)
    return pd.concat(found), sorted(set(shared) | set(inside)), len(shared)


def has_later_copy(users_part: str, first: pd.Series) -> bool:
    """Whether a written users part holds a row of a repeated Id other than its first one."""
    written = _part_columns(users_part, [ID, SOURCE_ROW])
    kept_row = pd.Series(written[ID]).map(first).to_numpy()
    return bool((pd.notna(kept_row) & (kept_row != written[SOURCE_ROW])).any())
