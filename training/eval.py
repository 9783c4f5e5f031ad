"""Zero-shot evaluation as in the GPT-2 paper: sliding-window perplexity on WikiText and PTB, LAMBADA
last-word accuracy and perplexity, from local files.

WikiText is stored tokenized (`word , word @-@ word`); GPT-2 scored it after undoing that with an
invertible detokenizer, so `wikitext_detokenize` maps the text back to ordinary prose first (the rules
of the detokenizer Megatron-LM and lm-evaluation-harness use). Perplexity is reported per GPT-2 token
and per word of the original file (the unit the benchmark's published numbers use). LAMBADA follows
lm-evaluation-harness' `lambada_openai`: context = text up to the last space, target = the last word;
correct when greedy decoding reproduces every token of the target.
"""

from __future__ import annotations

import json
import math
import re

import torch
from torch.nn import functional as F

from training.checkpoint import model_from_checkpoint
from training.hf import load_hf
from training.model import GPT
from training.tokenizer import gpt2_encoding
from webtext.core import storage
from webtext.core.stage import InputError


def load_model(location, device: str = "cpu") -> GPT:
    """A model from a webtext checkpoint (ckpt.pt) or a Hugging Face GPT-2 folder."""
    model = load_hf(location) if storage.is_dir(location) else model_from_checkpoint(location)
    return model.to(device).eval()


def wikitext_detokenize(text: str) -> str:
    """Undo WikiText's tokenization (contractions, @-@ @,@ @.@, spaces around punctuation and brackets)."""
    text = text.replace("s '", "s'")
    text = re.sub(r"/' [0-9]/", r"/'[0-9]/", text)
    text = text.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    text = text.replace(" : ", ": ").replace(" ; ", "; ").replace(" . ", ". ").replace(" ! ", "! ").replace(" ? ", "? ")
    text = text.replace(" , ", ", ")
    text = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", text)
    text = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", text)
    text = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", text)
    text = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', text)
    text = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", text)
    text = text.replace("= = = =", "====").replace("= = =", "===").replace("= =", "==")
    text = text.replace(" " + chr(176) + " ", chr(176))
    text = text.replace(" \n", "\n").replace("\n ", "\n")
    text = text.replace(" N ", " 1 ").replace(" 's", "'s")
    return text


def ptb_detokenize(text: str) -> str:
    """PTB is lower case without punctuation; only its split contractions are joined back."""
    return re.sub(r" (n't|'s|'re|'ve|'m|'ll|'d)\b", r"\1", text)


@torch.no_grad()
def perplexity(model: GPT, tokens: list[int], stride: int | None = None, device: str = "cpu") -> tuple[float, int]:
    """(total negative log-likelihood in nats, tokens scored) with a sliding window: each window of
    block_size tokens scores only its last `stride` tokens, so every token but the first is scored once
    with at least block_size - stride tokens of context."""
    block = model.config.block_size
    stride = stride or block // 2
    if len(tokens) < 2 or not 0 < stride <= block:
        raise InputError(
            f"perplexity needs at least 2 tokens (got {len(tokens)}) and 0 < stride <= {block} (got {stride})"
        )
    ids = torch.tensor(tokens, dtype=torch.long, device=device)
    nll, scored, prev_end = 0.0, 0, 0
    for begin in range(0, max(1, len(tokens) - 1), stride):
        end = min(begin + block + 1, len(tokens))
        window = ids[begin:end]
        logits, _ = model(window[None, :-1])
        targets = window[1:].clone()
        new = end - max(prev_end, begin + 1)  # targets not scored by an earlier window
        targets[: len(targets) - new] = -100
        nll += F.cross_entropy(logits[0].float(), targets, ignore_index=-100, reduction="sum").item()
        scored += new
        prev_end = end
        if end == len(tokens):
            break
    return nll, scored


def text_perplexity(model: GPT, text: str, words: int, stride: int | None = None, device: str = "cpu") -> dict:
    """Token- and word-level perplexity of a detokenized text; `words` counts those of the original file."""
    tokens = gpt2_encoding().encode_ordinary(text)
    nll, scored = perplexity(model, tokens, stride, device)
    return {"tokens": scored, "words": words, "ppl": math.exp(nll / scored), "word_ppl": math.exp(nll / words)}


@torch.no_grad()
def lambada_accuracy(model: GPT, lines: list[str], device: str = "cpu") -> dict:
    """Last-word accuracy (greedy) and perplexity of the target word."""
    encoding, block = gpt2_encoding(), model.config.block_size
    correct, total_logprob = 0, 0.0
    for line_number, line in enumerate(lines, 1):
        text = json.loads(line)["text"]
        if " " not in text.strip():
            raise InputError(f"LAMBADA line {line_number}: no last word to predict")
        context, word = text.rstrip().rsplit(" ", 1)
        context_ids, target_ids = encoding.encode_ordinary(context), encoding.encode_ordinary(" " + word)
        ids = (context_ids + target_ids)[-(block + 1) :]
        logits, _ = model(torch.tensor([ids[:-1]], device=device))
        logprobs = F.log_softmax(logits[0, -len(target_ids) :].float(), dim=-1)
        target = torch.tensor(target_ids, device=device)
        correct += bool((logprobs.argmax(-1) == target).all())
        total_logprob += logprobs.gather(1, target[:, None]).sum().item()
    n = len(lines)
    return {"examples": n, "accuracy": correct / n, "ppl": math.exp(-total_logprob / n)}


def evaluate(
    checkpoint,
    wikitext=None,
    ptb=None,
    lambada=None,
    stride: int | None = None,
    device: str = "auto",
    limit: int | None = None,
) -> dict:
    """Print and return the zero-shot results of a checkpoint on the given files."""
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    model = load_model(checkpoint, device)
    results = {}
    for name, path, detokenize in (("wikitext", wikitext, wikitext_detokenize), ("ptb", ptb, ptb_detokenize)):
        if path:
            raw = storage.read_text(path)
            results[name] = text_perplexity(model, detokenize(raw), len(raw.split()), stride, device)
    if lambada:
        lines = [line for line in storage.read_text(lambada).splitlines() if line.strip()][:limit]
        results["lambada"] = lambada_accuracy(model, lines, device)
    for name, r in results.items():
        if name == "lambada":
            print(f"{name:9} accuracy {r['accuracy']:.2%}  ppl {r['ppl']:.2f}  ({r['examples']} examples)")
        else:
            print(f"{name:9} ppl {r['ppl']:.2f} per token, {r['word_ppl']:.2f} per word  ({r['tokens']:,} tokens)")
    return results
