"""Zero-shot evaluation (sliding-window perplexity, LAMBADA), WikiText detokenization, Hugging Face round trip."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from training.eval import lambada_accuracy, load_model, perplexity, text_perplexity, wikitext_detokenize
from training.hf import load_hf, save_hf
from training.model import GPT, GPTConfig
from training.tokenizer import gpt2_encoding

ROOT = Path(__file__).resolve().parents[1]


def small_model(seed=0, block_size=16):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(block_size=block_size, vocab_size=50257, n_layer=2, n_head=2, n_embd=32)).eval()
    with torch.no_grad():  # non-zero biases and LayerNorm affine, so every parameter's mapping matters
        for p in model.parameters():
            if p.dim() == 1:
                p.normal_(0, 0.1)
    return model


def test_wikitext_detokenizer_undoes_the_tokenization():
    raw = ' = Robert <unk> = \n Robert is an English film , television @-@ star ( born 1 @,@ 000 ) . He earned 2 @.@ 5 " stars " ; '
    assert (
        wikitext_detokenize(raw)
        == ' = Robert <unk> =\nRobert is an English film, television-star (born 1,000). He earned 2.5 "stars"; '
    )


def test_sliding_window_perplexity_equals_full_context_when_it_fits():
    model = small_model(block_size=16)
    tokens = list(range(100, 140))
    nll, scored = perplexity(model, tokens, stride=16)  # disjoint windows: each scored once
    assert scored == 39
    with torch.no_grad():  # stride = block: the same as scoring consecutive chunks with their own context
        expected = 0.0
        for begin in range(0, 39, 16):
            chunk = torch.tensor([tokens[begin : begin + 17]])
            logits, _ = model(chunk[:, :-1])
            expected += F.cross_entropy(logits[0], chunk[0, 1:], reduction="sum").item()
    assert math.isclose(nll, expected, rel_tol=1e-5)
    nll_overlap, scored_overlap = perplexity(model, tokens, stride=4)
    assert scored_overlap == 39 and nll_overlap != pytest.approx(nll)  # more context changes the scores


def test_word_perplexity_counts_the_original_files_words():
    model = small_model(block_size=16)
    raw = " The council voted 1 @,@ 000 times , and residents @-@ welcomed it . \n" * 3
    text = wikitext_detokenize(raw)
    result = text_perplexity(model, text, len(raw.split()))
    nll, scored = perplexity(model, gpt2_encoding().encode_ordinary(text))
    assert result["words"] == 42 and len(text.split()) < 42
    assert math.isclose(result["word_ppl"], math.exp(nll / 42)) and math.isclose(result["ppl"], math.exp(nll / scored))


def test_lambada_counts_a_word_right_only_when_greedy_gets_every_token():
    model = small_model()
    enc = gpt2_encoding()
    line = json.dumps({"text": "the cat sat on the mat"})
    result = lambada_accuracy(model, [line])
    ids = enc.encode_ordinary("the cat sat on the") + enc.encode_ordinary(" mat")
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[:-1]]))
    logprob = F.log_softmax(logits[0, -1], -1)[ids[-1]].item()
    assert math.isclose(result["ppl"], math.exp(-logprob), rel_tol=1e-5)
    assert result["accuracy"] == float(logits[0, -1].argmax().item() == ids[-1])


def test_huggingface_round_trip_gives_identical_logits(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = small_model(seed=3)
    save_hf(model, tmp_path / "hf")
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    x = torch.randint(0, 50257, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours_logits = model(x)[0]
        assert torch.allclose(theirs(x).logits, ours_logits, atol=1e-4, rtol=1e-4)
        theirs.save_pretrained(tmp_path / "saved-by-transformers")
        back = load_hf(tmp_path / "saved-by-transformers")
        assert torch.equal(back(x)[0], ours_logits)


@pytest.mark.slow
def test_cli_eval_export_import(tmp_path):
    model = small_model(seed=1, block_size=32)
    save_hf(model, tmp_path / "hf")
    wiki = tmp_path / "wiki.tokens"
    wiki.write_text(" = Title = \n The council voted , and residents @-@ welcomed the plan . \n" * 5)
    lamb = tmp_path / "lambada.jsonl"
    lamb.write_text(
        "\n".join(
            json.dumps({"text": f"the library opened a new branch near the river {w}"}) for w in ("today", "bank")
        )
    )

    def run(*a):
        return subprocess.run([sys.executable, "-m", "webtext.cli", *a], cwd=ROOT, capture_output=True, text=True)

    imported = run("import-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "ckpt.pt"))
    assert imported.returncode == 0, imported.stderr
    assert all(
        torch.equal(a, b)
        for a, b in zip(load_model(tmp_path / "ckpt.pt").state_dict().values(), model.state_dict().values())
    )
    done = run("eval", str(tmp_path / "ckpt.pt"), "--wikitext", str(wiki), "--ptb", str(wiki), "--lambada", str(lamb))
    assert done.returncode == 0, done.stderr
    raw = wiki.read_text()  # the command's figures are those of the model it was given
    wikitext = text_perplexity(model, wikitext_detokenize(raw), len(raw.split()))
    lambada = lambada_accuracy(model, lamb.read_text().splitlines())
    assert f"wikitext  ppl {wikitext['ppl']:.2f} per token, {wikitext['word_ppl']:.2f} per word" in done.stdout
    assert f"lambada   accuracy {lambada['accuracy']:.2%}  ppl {lambada['ppl']:.2f}  (2 examples)" in done.stdout
    exported = run("export-hf", str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "again"))
    assert (
        exported.returncode == 0
        and (tmp_path / "again" / "model.safetensors").read_bytes()
        == (tmp_path / "hf" / "model.safetensors").read_bytes()
    )
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    bad = run("eval", str(tmp_path / "bad.pt"), "--wikitext", str(wiki))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "bad.pt: cannot load checkpoint" in bad.stderr


def test_training_starts_from_imported_weights_and_refuses_other_shapes(tmp_path, capsys):
    from tests.test_training import write_shards
    from training.checkpoint import CheckpointError
    from training.hf import import_hf
    from training.train import train
    from webtext.core.config import TrainConfig

    shards = write_shards(tmp_path / "shards", shards=1)
    settings = dict(
        shards=shards, block_size=16, batch_size=2, max_steps=1, val_fraction=0.0, sample_tokens=0, log_every=1
    )
    torch.manual_seed(5)
    save_hf(
        GPT(GPTConfig(block_size=16, n_layer=2, n_head=2, n_embd=64)), tmp_path / "tiny-hf"
    )  # the tiny preset's shape
    import_hf(tmp_path / "tiny-hf", tmp_path / "a" / "ckpt.pt")
    imported = load_model(tmp_path / "a" / "ckpt.pt")
    result = train(TrainConfig(out_dir=tmp_path / "a", **settings))
    assert "starting from the weights in" in capsys.readouterr().out
    from training.data import PackedLoader

    x, y = PackedLoader(shards, 2, 16, seed=1337).next_batch()
    assert result.losses[0][1] == round(imported(x, y)[1].item(), 4)  # step 1's loss is the imported model's
    save_hf(small_model(), tmp_path / "other-hf")
    import_hf(tmp_path / "other-hf", tmp_path / "b" / "ckpt.pt")
    with pytest.raises(CheckpointError, match="weights do not fit preset 'tiny'"):
        train(TrainConfig(out_dir=tmp_path / "b", **settings))
