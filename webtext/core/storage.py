"""One storage layer for every location webtext reads or writes: local paths and URIs.

A location is a string: a local path (relative ones are made absolute) or a URI that pyarrow's
filesystems resolve (`file://`, `s3://`, `gs://`, `hdfs://`, ...). S3 takes its endpoint and
credentials from the standard AWS variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`), so any S3-compatible store works. Writes are atomic:
a local file is written under a temporary name and renamed; an object store publishes an object
only when its upload completes, so a crash never leaves a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

TMP_SUFFIX = ".tmp"


class StorageError(OSError):
    """A location that cannot be read or written, after the retries of transient failures; the message names it."""


def is_uri(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def normalize(location: str | os.PathLike) -> str:
    """A URI as given (less a trailing slash), or an absolute local path."""
    text = str(location)
    if is_uri(text):
        if text.startswith("file://"):
            return str(Path(text[len("file://") :]).absolute())
        return text.rstrip("/") if not text.endswith("://") else text
    return str(Path(text).expanduser().absolute())


def is_local(location: str | os.PathLike) -> bool:
    return not is_uri(normalize(location))


# A transient S3 failure (connection reset, 5xx, throttling) is retried by the AWS SDK with exponential
# backoff (~13 s in all at most); one that persists raises, naming the object.
S3_ATTEMPTS = 8


@lru_cache(maxsize=64)
def _filesystem_for(prefix: str) -> pafs.FileSystem:
    fs, _ = pafs.FileSystem.from_uri(prefix)
    if isinstance(fs, pafs.S3FileSystem):  # from_uri takes no retry strategy: the same store, with one
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        fs = pafs.S3FileSystem(
            region=fs.region,
            endpoint_override=endpoint,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=S3_ATTEMPTS),
        )
    return fs


def resolve(location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of a location and the path within it."""
    loc = normalize(location)
    if not is_uri(loc):
        return pafs.LocalFileSystem(), loc
    scheme, rest = loc.split("://", 1)
    # One filesystem object per scheme and bucket/authority: S3 clients are costly to create.
    authority = rest.split("/", 1)[0]
    try:
        fs = _filesystem_for(f"{scheme}://{authority}")
        _, path = pafs.FileSystem.from_uri(loc) if scheme not in ("s3", "gs", "gcs") else (None, rest)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise StorageError(f"{loc}: unsupported or unreachable storage location: {exc}") from exc
    return fs, path


def join(base: str | os.PathLike, *parts: str) -> str:
    loc = normalize(base)
    if is_uri(loc):
        return posixpath.join(loc, *parts)
    return str(Path(loc, *parts))


def name(location: str | os.PathLike) -> str:
    return posixpath.basename(normalize(location).rstrip("/"))


def info(location: str | os.PathLike) -> pafs.FileInfo:
    fs, path = resolve(location)
    try:
        return fs.get_file_info(path)
    except OSError as exc:
        raise StorageError(f"{normalize(location)}: {exc}") from exc


def exists(location: str | os.PathLike) -> bool:
    return info(location).type != pafs.FileType.NotFound


def is_dir(location: str | os.PathLike) -> bool:
    return info(location).type == pafs.FileType.Directory


def is_file(location: str | os.PathLike) -> bool:
    return info(location).type == pafs.FileType.File


def size(location: str | os.PathLike) -> int:
    return info(location).size


def makedirs(location: str | os.PathLike) -> None:
    fs, path = resolve(location)
    try:
        fs.create_dir(path, recursive=True)
    except OSError as exc:
        raise StorageError(f"{normalize(location)}: cannot create folder: {exc}") from exc


def hidden(filename: str) -> bool:
    """Names that are bookkeeping, not data: `_stats.json`, `.part.tmp`, `_SUCCESS`..."""
    return filename.startswith(("_", ".")) or filename.endswith(TMP_SUFFIX)


def list_files(location: str | os.PathLike, suffixes: tuple[str, ...] = (), recursive: bool = True) -> list[str]:
    """Data files under a folder, sorted, without hidden bookkeeping files or folders."""
    loc = normalize(location)
    fs, path = resolve(loc)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive, allow_not_found=True))
    except OSError as exc:
        raise StorageError(f"{loc}: cannot list: {exc}") from exc
    out = []
    for entry in infos:
        if entry.type != pafs.FileType.File:
            continue
        relative = entry.path[len(path.rstrip("/")) + 1 :]
        if any(hidden(part) for part in relative.split("/")):
            continue
        if suffixes and not entry.path.endswith(suffixes):
            continue
        out.append(join(loc, *relative.split("/")))
    return sorted(out)


def children(location: str | os.PathLike) -> list[str]:
    """Every file and folder directly in a folder, bookkeeping ones included; none when it does not exist."""
    loc = normalize(location)
    fs, path = resolve(loc)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    return sorted(join(loc, posixpath.basename(entry.path.rstrip("/"))) for entry in infos)


def parquet_files(location: str | os.PathLike) -> list[str]:
    """A Parquet file as itself, or the Parquet files of a folder; StorageError when there are none."""
    loc = normalize(location)
    kind = info(loc).type
    if kind == pafs.FileType.File:
        return [loc]
    if kind == pafs.FileType.NotFound:
        raise StorageError(f"{loc}: no such file or folder")
    files = list_files(loc, (".parquet",))
    if not files:
        raise StorageError(f"{loc}: no Parquet files in this folder")
    return files


def open_input(location: str | os.PathLike) -> IO[bytes]:
    """A seekable binary stream (what Parquet readers need)."""
    fs, path = resolve(location)
    try:
        return fs.open_input_file(path)
    except OSError as exc:
        raise StorageError(f"{normalize(location)}: cannot open: {exc}") from exc


def open_input_stream(location: str | os.PathLike) -> IO[bytes]:
    """A sequential binary stream, without the filesystem's own decompression."""
    fs, path = resolve(location)
    try:
        return fs.open_input_stream(path, compression=None)
    except OSError as exc:
        raise StorageError(f"{normalize(location)}: cannot open: {exc}") from exc


@contextlib.contextmanager
def atomic_output(location: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary stream whose content appears under `location` only when the block ends without error."""
    loc = normalize(location)
    fs, path = resolve(loc)
    parent = posixpath.dirname(path) if is_uri(loc) else str(Path(path).parent)
    if is_uri(loc):
        target = path  # an object appears only when its upload completes
    else:
        fs.create_dir(parent, recursive=True)
        target = f"{path}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"
    try:
        stream = fs.open_output_stream(target, compression=None)
    except OSError as exc:
        raise StorageError(f"{loc}: cannot write: {exc}") from exc
    try:
        yield stream
        stream.close()
    except BaseException:
        with contextlib.suppress(Exception):
            stream.close()
        if target != path:
            with contextlib.suppress(Exception):
                fs.delete_file(target)
        elif is_uri(loc):
            with contextlib.suppress(Exception):
                fs.delete_file(path)
        raise
    if target != path:
        fs.move(target, path)


def write_bytes(location: str | os.PathLike, data: bytes) -> None:
    with atomic_output(location) as stream:
        stream.write(data)


def read_bytes(location: str | os.PathLike) -> bytes:
    with open_input_stream(location) as stream:
        return stream.read()


def write_text(location: str | os.PathLike, text: str) -> None:
    write_bytes(location, text.encode())


def read_text(location: str | os.PathLike) -> str:
    return read_bytes(location).decode()


def write_json(location: str | os.PathLike, value) -> None:
    write_text(location, json.dumps(value, indent=2, sort_keys=False) + "\n")


def read_json(location: str | os.PathLike):
    try:
        return json.loads(read_text(location))
    except json.JSONDecodeError as exc:
        raise StorageError(f"{normalize(location)}: not valid JSON: {exc}") from exc


def delete(location: str | os.PathLike) -> None:
    """Remove a file or a whole folder; nothing when it does not exist."""
    fs, path = resolve(location)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif kind == pafs.FileType.File:
        fs.delete_file(path)


def delete_temporaries(location: str | os.PathLike) -> int:
    """Remove the `*.tmp` leftovers of killed writers under a folder; returns how many."""
    loc = normalize(location)
    fs, path = resolve(loc)
    removed = 0
    for entry in fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True)):
        if entry.type == pafs.FileType.File and entry.path.endswith(TMP_SUFFIX):
            fs.delete_file(entry.path)
            removed += 1
    return removed


def parquet_metadata(location: str | os.PathLike) -> pq.FileMetaData:
    with open_input(location) as f:
        return pq.read_metadata(f)


@contextlib.contextmanager
def parquet_writer(location: str | os.PathLike, schema: pa.Schema, **options) -> Iterator[pq.ParquetWriter]:
    """A ParquetWriter whose file appears, complete, only when the block ends without error."""
    with atomic_output(location) as stream:
        writer = pq.ParquetWriter(stream, schema, **options)
        try:
            yield writer
        finally:
            writer.close()


def write_parquet(location: str | os.PathLike, table: pa.Table, **options) -> None:
    with parquet_writer(location, table.schema, **options) as writer:
        writer.write_table(table)
