"""GPT-2's exact byte-level BPE through tiktoken, with its ranks read from a local file.

tiktoken downloads the ranks at run time, which fails offline. The same file ships inside the
`openai-whisper` source package on PyPI (`whisper/assets/gpt2.tiktoken`): when the cache lacks it,
pip fetches that package from the registry and the one file is taken out and checked by sha256.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path

import tiktoken
from tiktoken.load import load_tiktoken_bpe
from tiktoken_ext.openai_public import r50k_pat_str

EOT = 50256
RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
WHISPER_SDIST = "openai-whisper==20250625"
MEMBER = "whisper/assets/gpt2.tiktoken"


def ranks_path() -> Path:
    return Path(os.environ.get("WEBTEXT_CACHE", Path.home() / ".cache" / "webtext")) / "gpt2.tiktoken"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_ranks(target: Path) -> Path:
    """Take gpt2.tiktoken out of the openai-whisper sdist (via pip, so only the registry is needed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            WHISPER_SDIST,
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            tmp,
            "-q",
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if result.returncode != 0 or not sdists:
            raise RuntimeError(
                f"cannot fetch GPT-2's BPE ranks ({' '.join(command)} failed: {result.stderr.strip()[-300:]}); "
                f"put gpt2.tiktoken (sha256 {RANKS_SHA256}) at {target} by hand"
            )
        with tarfile.open(sdists[0]) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith(MEMBER))
            data = archive.extractfile(member).read()
        partial = target.with_suffix(".tmp")
        partial.write_bytes(data)
        if _sha256(partial) != RANKS_SHA256:
            partial.unlink()
            raise RuntimeError(f"{MEMBER} in {sdists[0].name} does not have the expected sha256 {RANKS_SHA256}")
        os.replace(partial, target)
    return target


@lru_cache(maxsize=1)
def gpt2_encoding() -> tiktoken.Encoding:
    """tiktoken's `gpt2` encoding (vocab 50257, <|endoftext|> = 50256) built from the local ranks file."""
    path = ranks_path()
    if not path.exists():
        fetch_ranks(path)
    if _sha256(path) != RANKS_SHA256:
        raise RuntimeError(f"{path}: not GPT-2's BPE ranks (sha256 differs from {RANKS_SHA256}); delete it to refetch")
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=load_tiktoken_bpe(str(path)),
        special_tokens={"<|endoftext|>": EOT},
        explicit_n_vocab=50257,
    )
