"""Harvest on bad and big dump files: truncated, corrupt, empty, multi-frame, split by byte range, on S3."""

from __future__ import annotations

import json
import logging
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from crawler.harvest import (
    HARVEST,
    TRUNCATED,
    DumpError,
    HarvestTask,
    MergeTask,
    Slice,
    harvest_file,
    harvest_task,
    merge_candidates,
    merge_task,
    read_submissions,
    slices,
)
from tests.corpora import RECORDS, dump_bytes, write_dump
from webtext.core import storage
from webtext.core.config import HarvestConfig
from webtext.core.runner import run_stage
from webtext.core.stats import StageStats


def many_records(n: int) -> bytes:
    lines = [
        json.dumps(
            {"id": f"r{i}", "url": f"http://site{i % 37}.example.com/p/{i}", "score": i % 9, "title": "t" * (i % 50)}
        )
        for i in range(n)
    ]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("name", ["RS.zst", "RS.xz", "RS.gz", "RS.bz2"])
@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_a_dump_cut_short_is_an_error_naming_file_and_offset(tmp_path, name, keep):
    whole = write_dump(tmp_path / ("whole" + name), many_records(3000)).read_bytes()
    path = tmp_path / name
    path.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(DumpError, match=rf"{name}: dump ends early \(line \d+ reached, compressed byte \d+\)"):
        harvest_file(str(path), HarvestConfig())


def test_on_truncated_warn_keeps_what_was_read_and_counts_the_tail(tmp_path, caplog):
    whole = write_dump(tmp_path / "whole.zst", many_records(3000)).read_bytes()
    path = tmp_path / "RS_cut.zst"
    path.write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING):
        candidates, stats = harvest_file(str(path), HarvestConfig(on_truncated="warn"))
    assert stats.dropped[TRUNCATED] == 1 and 0 < candidates.num_rows < 3000
    assert "RS_cut.zst: dump ends early" in caplog.text


def test_corrupt_frame_and_empty_dumps_are_errors(tmp_path):
    data = bytearray(write_dump(tmp_path / "whole.zst", many_records(3000)).read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0x5A
    (tmp_path / "RS_corrupt.zst").write_bytes(bytes(data))
    with pytest.raises(DumpError, match=r"RS_corrupt.zst: corrupt dump \(line \d+ reached, compressed byte \d+\)"):
        harvest_file(str(tmp_path / "RS_corrupt.zst"), HarvestConfig())
    candidates, stats = harvest_file(str(tmp_path / "RS_corrupt.zst"), HarvestConfig(on_truncated="warn"))
    assert stats.dropped[TRUNCATED] == 1 and stats.input == candidates.num_rows + sum(stats.dropped.values())
    _, stats = harvest_file(
        str(tmp_path / "whole.zst"), HarvestConfig()
    )  # the process's zstd context, after the errors
    assert stats.input == 3000 and not stats.dropped[TRUNCATED]
    (tmp_path / "RS_empty.zst").write_bytes(b"")
    with pytest.raises(DumpError, match="RS_empty.zst: empty dump"):
        harvest_file(str(tmp_path / "RS_empty.zst"), HarvestConfig())
    write_dump(tmp_path / "RS_blank.xz", b"")
    with pytest.raises(DumpError, match="RS_blank.xz: empty dump"):
        harvest_file(str(tmp_path / "RS_blank.xz"), HarvestConfig())


def test_a_plain_dump_whose_last_record_is_cut_is_truncated(tmp_path):
    data = many_records(100)
    (tmp_path / "RS.jsonl").write_bytes(data[:-20])
    with pytest.raises(DumpError, match=r"RS.jsonl: dump ends early \(line 100 reached"):
        harvest_file(str(tmp_path / "RS.jsonl"), HarvestConfig())


def test_every_frame_of_a_multi_frame_zst_is_read(tmp_path):
    first, second = many_records(1000), many_records(1500)
    compressor = zstandard.ZstdCompressor()
    (tmp_path / "RS.zst").write_bytes(compressor.compress(first) + compressor.compress(second))
    stats = StageStats("harvest", "submissions")
    records = [r for batch in read_submissions(Slice(str(tmp_path / "RS.zst")), HarvestConfig(), stats) for r in batch]
    assert len(records) == stats.input == 2500


def test_a_dump_left_midway_does_not_disturb_the_next(tmp_path):
    """Every dump of a process shares one zstd context (its window buffer is reused)."""
    rng = random.Random(3)
    lines = [
        json.dumps({"id": f"a{i}", "url": "http://a.example.com/", "title": rng.randbytes(200).hex()})
        for i in range(8000)
    ]
    write_dump(tmp_path / "RS_a.zst", ("\n".join(lines) + "\n").encode())  # ~3 MB compressed: several 1 MB reads
    write_dump(tmp_path / "RS_b.zst", many_records(2000))
    left = read_submissions(Slice(str(tmp_path / "RS_a.zst")), HarvestConfig(), StageStats("harvest", "submissions"))
    assert len(next(left)) < 8000  # one chunk in, inside the frame, then abandoned
    stats = StageStats("harvest", "submissions")
    assert (
        sum(map(len, read_submissions(Slice(str(tmp_path / "RS_b.zst")), HarvestConfig(), stats)))
        == stats.input
        == 2000
    )


def test_a_merge_gives_back_the_window_of_its_worker(tmp_path):
    """The merges run in the read tasks' workers: the first one there frees the zstd context (up to 2 GiB)."""
    from crawler.harvest import _decompressor

    write_dump(tmp_path / "RS.zst", many_records(100))
    harvest_file(str(tmp_path / "RS.zst"), HarvestConfig())
    assert _decompressor.cache_info().currsize == 1  # kept for the worker's next dump
    (tmp_path / "bucket").mkdir()
    merge_task(MergeTask(str(tmp_path / "bucket"), str(tmp_path / "part-00000.parquet"), HarvestConfig()))
    assert _decompressor.cache_info().currsize == 0
    assert pq.read_table(tmp_path / "part-00000.parquet").num_rows == 0


def test_frames_ending_inside_and_across_reads_are_read_whole(tmp_path):
    """Frames of ~150-400 KB compressed: several end inside one 1 MB read, some across two reads."""
    rng = random.Random(7)
    frames = [
        [
            json.dumps(
                {
                    "id": f"f{f}r{i}",
                    "url": f"http://s{i}.example.com/",
                    "score": 5,
                    "title": rng.randbytes(60 * (2 + f % 3)).hex(),
                }
            ).encode()
            for i in range(2500)
        ]
        for f in range(9)
    ]
    compressor = zstandard.ZstdCompressor()
    data = b"".join(compressor.compress(b"\n".join(lines) + b"\n") for lines in frames)
    assert len(data) > 2 * 2**20
    (tmp_path / "RS.zst").write_bytes(data)
    stats = StageStats("harvest", "submissions")
    ids = [r.id for batch in read_submissions(Slice(str(tmp_path / "RS.zst")), HarvestConfig(), stats) for r in batch]
    assert ids == [f"f{f}r{i}" for f in range(9) for i in range(2500)] and stats.input == 9 * 2500
    (tmp_path / "RS_cut.zst").write_bytes(data[: len(data) - 1000])
    with pytest.raises(DumpError, match="RS_cut.zst: dump ends early"):
        harvest_file(str(tmp_path / "RS_cut.zst"), HarvestConfig())


@pytest.mark.parametrize("split", [3, 97, 4096, 10**9])
def test_byte_ranges_of_a_plain_dump_read_every_line_once(tmp_path, split):
    path = tmp_path / "RS.jsonl"
    path.write_bytes(many_records(300))
    pieces = slices([str(path)], split)
    assert len(pieces) == (1 if split >= path.stat().st_size else -(-path.stat().st_size // split))
    ids = []
    for piece in pieces:
        stats = StageStats("harvest", "submissions")
        ids += [r.id for batch in read_submissions(piece, HarvestConfig(), stats) for r in batch]
    assert sorted(ids) == sorted(f"r{i}" for i in range(300))


def test_split_stage_equals_unsplit_and_no_candidates_gives_an_empty_dataset(tmp_path, local_ray):
    path = tmp_path / "RS.jsonl"
    path.write_bytes(many_records(5000))
    whole = run_stage(HARVEST, [str(path)], str(tmp_path / "a"), HarvestConfig())
    split = run_stage(HARVEST, [str(path)], str(tmp_path / "b"), HarvestConfig(split_bytes=50_000, buckets=5))
    assert whole.to_dict() | {"seconds": 0} == split.to_dict() | {"seconds": 0}
    a, b = pq.read_table(tmp_path / "a").sort_by("url"), pq.read_table(tmp_path / "b").sort_by("url")
    assert a.equals(b) and a.num_rows == whole.output > 0
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "RS_cut.jsonl").write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DumpError, match=r"RS_cut.jsonl: dump ends early"):  # an input error (exit 2), one line
        run_stage(HARVEST, [str(tmp_path / "cut")], str(tmp_path / "d"), HarvestConfig())
    nothing = run_stage(HARVEST, [str(path)], str(tmp_path / "c"), HarvestConfig(min_karma=100))
    assert nothing.output == 0 and nothing.dropped["low_karma"] == 5000
    assert pq.read_table(tmp_path / "c").num_rows == 0


def test_harvest_reads_and_writes_object_storage(tmp_path, local_ray, s3_server):
    write_dump(tmp_path / "RS_a.zst", dump_bytes())
    dumps = f"{s3_server}/harvest-in"
    storage.write_bytes(f"{dumps}/RS_a.zst", (tmp_path / "RS_a.zst").read_bytes())
    out = f"{s3_server}/harvest-out"
    stats = run_stage(HARVEST, [dumps], out, HarvestConfig(buckets=3))
    assert stats.output == 2 and stats.input == len(RECORDS) + 2
    assert sum(storage.parquet_metadata(f).num_rows for f in storage.parquet_files(out)) == 2
    assert not storage.exists(f"{out}/_scratch")


@pytest.mark.parametrize("buckets", [1, 4])
def test_a_task_leaves_one_file_per_bucket_however_often_its_buffer_fills(tmp_path, buckets):
    """14 buffer flushes, URLs repeating across them: one scratch file per bucket, no run left, and the
    merged URLs (provenance lists in input order) equal a one-process harvest of the same dump."""
    lines = [
        json.dumps(
            {"id": f"r{i}", "url": f"http://site{i % 13}.example.com/p/{i % 700}", "score": i % 5, "title": f"t{i}"}
        )
        for i in range(4000)
    ]
    dump = write_dump(tmp_path / "RS.zst", ("\n".join(lines) + "\n").encode())
    config = HarvestConfig()
    scratch = str(tmp_path / "scratch")
    result = harvest_task(HarvestTask(Slice(str(dump)), 0, buckets, scratch, config, flush_rows=300))
    assert result["input"] == 4000 and len(result["buckets"]) == buckets
    files = sorted(
        p.relative_to(tmp_path / "scratch").as_posix() for p in (tmp_path / "scratch").rglob("*") if p.is_file()
    )
    assert files == [f"b{b:05d}/t00000.parquet" for b in result["buckets"]]
    parts = []
    for b in result["buckets"]:
        assert pq.ParquetFile(f"{scratch}/b{b:05d}/t00000.parquet").metadata.num_row_groups >= 1
        merge_task(MergeTask(f"{scratch}/b{b:05d}", str(tmp_path / f"part-{b}.parquet"), config))
        parts.append(pq.read_table(tmp_path / f"part-{b}.parquet"))
    candidates, _ = harvest_file(str(dump), config)
    expected = merge_candidates(candidates, config, StageStats("harvest", "submissions"))
    merged = pa.concat_tables(parts).sort_by("url")
    assert merged.num_rows == expected.num_rows > 0 and merged.equals(expected)
