"""The study measures archlab's own models and data layer: its sizing helpers build registered
models, match parameter budgets, and read text through archlab.data."""

from __future__ import annotations

import pytest
import torch

from archlab.data import CharTokenizer, TokenStreams, fit_tokenizer, resolve_corpus
from archlab.models.gpt import GPT, Block
from archlab.models.rnn import RNNLanguageModel
from archlab.study.data import load_text
from archlab.study.nets import gpt_block, lm_config, n_params, study_lm, width_for_params


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru", "gpt"])
def test_study_lm_is_the_registered_model(arch):
    m = study_lm(arch, 20, 16, 2, max_len=12, attention="naive")
    assert isinstance(m, GPT if arch == "gpt" else RNNLanguageModel)
    cfg = m.config
    assert (cfg.vocab_size, cfg.d_model, cfg.layers, cfg.dropout) == (20, 16, 2, 0.0)
    if arch == "gpt":
        assert (cfg.block_size, cfg.heads, cfg.attention, cfg.tie_weights) == (
            12,
            4,
            "naive",
            False,
        )
    with pytest.raises(ValueError, match="arch"):
        study_lm("cnn", 20, 16)


@pytest.mark.parametrize("arch, kw", [("lstm", {}), ("gpt", {"max_len": 32})])
def test_width_for_params_is_the_closest_width(arch, kw):
    target, V = 20_000, 30
    w = width_for_params(arch, target, V, 1, **kw)
    step = 4 if arch == "gpt" else 1
    err = {
        v: abs(n_params(study_lm(arch, V, v, 1, **kw)) - target) for v in (w - step, w, w + step)
    }
    assert err[w] == min(err.values()) and err[w] < 0.1 * target


def test_gpt_block_is_archlabs_block():
    b = gpt_block(16, 4, "naive")
    assert isinstance(b, Block) and b.attn.impl == "naive"
    y, (k, v) = b(torch.randn(2, 5, 16))  # (B, n, d)
    assert y.shape == (2, 5, 16) and k.shape == (2, 4, 5, 4)


def test_gpt_only_fields_do_not_reach_a_recurrent_config():
    cfg = lm_config("lstm", 20, 16, max_len=8, positions="sinusoidal", forget_bias=1.0)
    assert "positions" not in cfg and cfg["forget_bias"] == 1.0
    assert lm_config("gpt", 20, 16, max_len=8, positions="sinusoidal")["positions"] == "sinusoidal"


def test_text_comes_from_archlab_data_with_the_char_tokenizer():
    text = load_text()
    corpus, _ = resolve_corpus("tinyshakespeare")
    streams = text.streams
    assert isinstance(streams, TokenStreams) and isinstance(streams.tokenizer, CharTokenizer)
    assert streams.tokenizer.chars == fit_tokenizer("char", corpus).chars
    assert (len(streams.train), len(streams.val)) == (1_003_854, 111_540)
    assert (
        text.desc["train_chars"] == len(streams.train)
        and text.vocab == len(corpus.train and set(corpus.train + corpus.val)) + 1
    )
    assert streams.tokenizer.decode(streams.train[:200].tolist()) == corpus.train[:200]
    x, y = streams.get_batch("train", 3, 16, torch.Generator().manual_seed(0))  # (B, T)
    assert x.shape == y.shape == (3, 16) and torch.equal(x[:, 1:], y[:, :-1])


@pytest.mark.parametrize("bf16_fast", [True, False])
def test_recall_trains_in_fp32_whatever_the_probe_says(monkeypatch, bf16_fast):
    """T1's recall fits pin fp32 (pools.RECALL_PRECISION): on an AVX512-BF16 CPU ``auto`` would
    pick bf16, where a 525-step tanh recurrence stayed at chance. Both probe outcomes are forced
    and the fit's resolved precision read from the Trainer's config."""
    import dataclasses

    import archlab.hardware as hw
    from archlab.study import pools
    from archlab.study.context import StudyContext
    from archlab.study.training import fit as real_fit

    real = hw.capabilities("cpu")
    speed = 4.0 if bf16_fast else 0.02  # the Zen 4 and Zen 3 ratios we measured
    hw.set_capabilities(dataclasses.replace(real, bf16_gflops=real.fp32_gflops * speed))
    seen = {}

    def spy(ctx, name, arch, cfg, task, train, **kw):
        seen["train"] = dict(train)
        seen["resolved"] = hw.resolve_precision(train.get("precision", "auto"), "cpu")[0]
        return real_fit(ctx, name, arch, cfg, task, train, **kw)

    monkeypatch.setattr(pools, "fit", spy)
    sizes = pools.RECALL["tiny"]
    ctx = StudyContext("T1", "tiny", [0], {"recall": sizes}, show_progress=False)
    try:
        pools.recall_fit(ctx, "tanh RNN", 0, sizes)
        assert hw.resolve_precision("auto", "cpu")[0] == ("bf16" if bf16_fast else "fp32")
    finally:
        hw.set_capabilities(None)
    assert seen["train"]["precision"] == "fp32" and seen["resolved"] == "fp32"
