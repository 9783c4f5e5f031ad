"""GPT-2's BPE for training: the loader lives in the core so that every stage can count tokens."""

from webtext.core.tokenizer import EOT, gpt2_encoding, ranks_path

__all__ = ["EOT", "gpt2_encoding", "ranks_path"]
