"""Hash buckets on storage, the partitioning of both crawler stages: harvest buckets candidates by URL
(one task per bucket then merges each URL's submissions), the crawl buckets its input by registered
domain (so that a domain is cut into units in one place)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc


def bucket_of(keys: pa.Array | pa.ChunkedArray, buckets: int) -> pa.Array:
    """Stable bucket of each key (crc32: the same on every node and run); a null key counts as ""."""
    step = 1 << 14  # keys turned into Python strings at a time: a whole column at once costs ~30 MB per 200k
    return pa.concat_arrays(
        [
            pa.array([zlib.crc32((k or "").encode()) % buckets for k in keys.slice(i, step).to_pylist()], pa.int32())
            for i in range(0, len(keys), step)
        ]
        or [pa.array([], pa.int32())]
    )


def by_bucket(table: pa.Table, ids: pa.Array) -> Iterator[tuple[int, pa.Table]]:
    """Each bucket's rows in turn, in bucket order (`ids`: each row's bucket)."""
    order = pc.sort_indices(ids)
    table = table.take(order)
    values, counts = pc.value_counts(ids).flatten()
    start = 0
    for bucket, count in sorted(zip(values.to_pylist(), counts.to_pylist())):
        yield bucket, table.slice(start, count)
        start += count
