"""Which parts of a layer can share a key: those whose [min, max] key ranges meet another part's.

Used before the duplicate-key passes (user Ids in `ingest`, event ids in `events`): a key can only
repeat across two parts whose ranges overlap, so a layer exported in key order needs no second
read at all, and a re-exported block costs one more read of the parts it meets.
"""

from __future__ import annotations


def overlapping(ranges: list) -> list[int]:
    """Positions of the ranges ((low, high), or None for a part without keys) that meet another range.

    Ranges are followed in chains: a part meeting a part that meets a third puts all three in.

    >>> overlapping([(0, 10), (20, 30), (25, 40), None, (41, 50)])
    [1, 2]
    """
    order = sorted((r[0], r[1], i) for i, r in enumerate(ranges) if r is not None)
    found, group, end = [], [], None
    for low, high, i in order:
        if group and low > end:
            found += group if len(group) > 1 else []
            group, end = [], None
        group.append(i)
        end = high if end is None else max(end, high)
    return sorted(found + (group if len(group) > 1 else []))
