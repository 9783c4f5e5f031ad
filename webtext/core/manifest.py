"""The shards folder's manifest: what the shard writer promises and every reader checks first.

A shards folder holds `manifest.json` and `data/shard-NNNNN-of-NNNNN.parquet`. Readers (the training
loader, `webtext validate`, `webtext inspect`) go through here, so they agree on names and versions.
"""

from __future__ import annotations

from webtext.core import storage
from webtext.core.schemas import SCHEMA_VERSION

MANIFEST = "manifest.json"
DATA = "data"


class ManifestError(ValueError):
    """A shards folder whose manifest is missing, unreadable or does not match its files."""


def read_manifest(shards_dir: str) -> dict:
    path = storage.join(shards_dir, MANIFEST)
    try:
        return storage.read_json(path)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc}") from exc


def shard_files(shards_dir: str) -> list[str]:
    """The shard files the manifest lists, in order; a clear error when there are none."""
    manifest = check_manifest(shards_dir)
    return [storage.join(shards_dir, *entry["file"].split("/")) for entry in manifest["shards"]]


def check_manifest(shards_dir: str) -> dict:
    """The cheap checks every reader runs before it starts: manifest present, schema version, file list."""
    manifest = read_manifest(shards_dir)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ManifestError(
            f"{storage.join(shards_dir, MANIFEST)}: schema version {version!r}, this webtext reads {SCHEMA_VERSION!r}"
        )
    listed = {entry["file"] for entry in manifest.get("shards", [])}
    data_dir = storage.join(shards_dir, DATA)
    present = {f"{DATA}/{storage.name(f)}" for f in storage.list_files(data_dir, (".parquet",))} if storage.exists(data_dir) else set()
    if listed - present:
        raise ManifestError(f"{shards_dir}: shard(s) listed in the manifest are missing: {', '.join(sorted(listed - present)[:5])}")
    if present - listed:
        raise ManifestError(f"{shards_dir}: shard(s) not listed in the manifest: {', '.join(sorted(present - listed)[:5])}")
    return manifest
