"""The shards folder's manifest: what the shard writer promises and every reader checks first.

A shards folder holds `manifest.json` (written last) and `data/shard-NNNNN-of-NNNNN.parquet`.
Readers (the training loader, `webtext validate`, `webtext inspect`) go through here, so they agree
on names and versions. `check_manifest` is the cheap part of `webtext validate` (one listing, no
file reads): present, this schema version, well-formed entries, the file list and sizes as listed.
"""

from __future__ import annotations

import pyarrow.fs as pafs

from webtext.core import storage
from webtext.core.schemas import SCHEMA_VERSION

MANIFEST = "manifest.json"
DATA = "data"
ENTRY_KEYS = ("file", "rows", "bytes", "sha256")


class ManifestError(ValueError):
    """A shards folder whose manifest is missing, unreadable or does not match its files."""


def read_manifest(shards_dir: str) -> dict:
    path = storage.join(shards_dir, MANIFEST)
    try:
        manifest = storage.read_json(path)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    return manifest


def shard_files(shards_dir: str) -> list[str]:
    """The shard files the manifest lists, in order; a clear error when there are none."""
    manifest = check_manifest(shards_dir)
    return [storage.join(shards_dir, *entry["file"].split("/")) for entry in manifest["shards"]]


def _sizes(data_dir: str) -> dict[str, int]:
    """`data/<name>` -> size of every visible file in the data folder, from one listing."""
    fs, path = storage.resolve(data_dir)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    except OSError as exc:
        raise ManifestError(f"{data_dir}: cannot list: {exc}") from exc
    names = {info.base_name: info.size for info in infos if info.type == pafs.FileType.File}
    return {f"{DATA}/{name}": size for name, size in names.items() if not storage.hidden(name)}


def check_manifest(shards_dir: str) -> dict:
    """The cheap checks every reader runs before it starts: manifest present, schema version, file list."""
    path = storage.join(shards_dir, MANIFEST)
    manifest = read_manifest(shards_dir)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ManifestError(f"{path}: schema version {version!r}, this webtext reads {SCHEMA_VERSION!r}")
    entries = manifest.get("shards")
    if not isinstance(entries, list) or not entries:
        raise ManifestError(f"{path}: no `shards` list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or any(key not in entry for key in ENTRY_KEYS):
            raise ManifestError(f"{path}: shards[{i}] lacks one of {', '.join(ENTRY_KEYS)}")
    present = _sizes(storage.join(shards_dir, DATA))
    listed = {entry["file"] for entry in entries}
    if listed - set(present):
        raise ManifestError(
            f"{shards_dir}: shard(s) listed in the manifest are missing: {', '.join(sorted(listed - set(present))[:5])}"
        )
    if set(present) - listed:
        raise ManifestError(
            f"{shards_dir}: shard(s) not listed in the manifest: {', '.join(sorted(set(present) - listed)[:5])}"
        )
    for entry in entries:
        if present[entry["file"]] != entry["bytes"]:
            raise ManifestError(
                f"{storage.join(shards_dir, *entry['file'].split('/'))}: {present[entry['file']]} bytes, the manifest says {entry['bytes']}"
            )
    return manifest
