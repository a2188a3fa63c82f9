"""Oracles for the language models (rnn, lstm, gru, gpt): shapes and gradients for every registered
LM, config round-trips, causality at every position (with a negative control), chunked == whole for
the RNNs, KV-cache == recomputation for the GPT, weight tying, the LSTM forget-gate bias, and
parameter counts against hand-derived formulas."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from archlab.errors import ArchlabError
from archlab.models import create_model, get_spec, list_models, make_config
from archlab.models import gpt as gpt_mod
from archlab.models.gpt import GPT, GPTConfig

# Tiny sizes for the base architectures; presets are built exactly as registered.
TINY = {
    "gpt": dict(vocab_size=11, block_size=16, layers=2, heads=2, d_model=16),
    "rnn": dict(vocab_size=11, d_model=12, layers=2),
    "lstm": dict(vocab_size=11, d_model=12, layers=2, forget_bias=1.0),
    "gru": dict(vocab_size=11, d_model=12, layers=2),
}
LM_NAMES = list_models("lm")
RNN_CELLS = ("rnn", "lstm", "gru")


def build(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, **{**TINY.get(name, {}), **overrides})


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once


def test_every_lm_family_is_registered():
    assert {"rnn", "lstm", "gru", "gpt", "gpt-nano"} <= set(LM_NAMES)


@pytest.mark.parametrize("name", LM_NAMES)
def test_forward_backward_finite(name):
    model = build(name).train()
    V = model.config.vocab_size
    idx = torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(1))
    logits = model(idx)
    assert logits.shape == (2, 8, V) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits.flatten(0, 1), idx.roll(-1, 1).flatten()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0


@pytest.mark.parametrize("name", LM_NAMES)
def test_config_json_round_trip_rebuilds_identical_model(name):
    cfg = make_config(name, **TINY.get(name, {}))
    d = json.loads(json.dumps(dataclasses.asdict(cfg)))
    cfg2 = type(cfg)(**d)
    assert cfg2 == cfg
    build_fn = get_spec(name).build
    torch.manual_seed(3)
    a = build_fn(cfg).state_dict()
    torch.manual_seed(3)
    b = build_fn(cfg2).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---- causality --------------------------------------------------------------------------------


def randomized(model: torch.nn.Module, std: float = 0.3) -> torch.nn.Module:
    """Causality holds for any weights; large random ones make a leak show up as O(1) changes
    (GPT-2's 0.02 init would shrink a real leak to ~1e-4)."""
    torch.manual_seed(11)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model


def future_leak(model: torch.nn.Module, T: int, seed: int = 0) -> float:
    """Largest change of the logits at positions <= t when every token after t is replaced, over
    all t at once: row t of a (T, T) batch is the base text with positions > t changed."""
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, V, (1, T), generator=g)  # (1, T)
    other = (base + torch.randint(1, V, (T, T), generator=g)) % V  # (T, T) differs everywhere
    future = torch.arange(T)[None, :] > torch.arange(T)[:, None]  # (T, T) row t: positions > t
    rows = torch.where(future, other, base.expand(T, T))  # (T, T)
    model.eval()
    with torch.no_grad():
        ref = model(base)[0]  # (T, V)
        out = model(rows)  # (T, T, V)
    diff = (out - ref[None]).abs().amax(dim=-1)  # (T, T)
    return diff[~future].max().item()


@pytest.mark.parametrize("name", [*RNN_CELLS, "gpt", "gpt-nano"])
def test_no_future_leak_at_any_position(name):
    model = randomized(build(name))
    T = min(16, getattr(model, "max_seq_len", 16))
    assert future_leak(model, T) < 1e-5


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "none"])
def test_gpt_causal_for_every_t_and_the_check_catches_a_missing_mask(positions, monkeypatch):
    model = randomized(build("gpt", positions=positions))
    assert future_leak(model, 16) < 1e-5
    # Negative control: the same model attending to the future must fail the same check.
    sdpa = F.scaled_dot_product_attention

    def unmasked(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kw):
        return sdpa(q, k, v, dropout_p=dropout_p)

    monkeypatch.setattr(gpt_mod, "attention", unmasked)  # the attention GPT calls
    assert future_leak(model, 16) > 1e-2


# ---- recurrent state --------------------------------------------------------------------------


@pytest.mark.parametrize("cell", RNN_CELLS)
def test_rnn_chunks_with_carried_state_equal_whole(cell):
    model = build(cell).eval()
    idx = torch.randint(0, 11, (3, 17), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole, s_whole = model(idx, return_state=True)
        state, parts = model.init_state(3), []
        for a, b in ((0, 5), (5, 6), (6, 17)):
            out, state = model(idx[:, a:b], state, return_state=True)
            parts.append(out)
        chunked = torch.cat(parts, dim=1)
        fresh = torch.cat([model(idx[:, a:b]) for a, b in ((0, 5), (5, 6), (6, 17))], dim=1)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    for x, y in zip(
        state if isinstance(state, tuple) else (state,),
        s_whole if isinstance(s_whole, tuple) else (s_whole,),
        strict=True,
    ):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)
    # Control: dropping the state between chunks changes the later logits.
    assert (fresh[:, 5:] - whole[:, 5:]).abs().max() > 1e-3


@pytest.mark.parametrize("cell", RNN_CELLS)
def test_rnn_generate_with_state_equals_recomputation(cell):
    model = build(cell).eval()
    prompt = torch.randint(0, 11, (2, 4), generator=torch.Generator().manual_seed(5))
    out = model.generate(prompt, 12, temperature=0.0)
    ref = prompt
    with torch.no_grad():
        for _ in range(12):
            ref = torch.cat((ref, model(ref)[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(out, ref)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    a = model.generate(prompt, 10, temperature=1.0, top_k=3, generator=g1)
    b = model.generate(prompt, 10, temperature=1.0, top_k=3, generator=g2)
    assert a.shape == (2, 14) and torch.equal(a, b)


def test_detach_state_keeps_values_and_cuts_graph():
    model = build("lstm")
    _, (h, c) = model(torch.zeros(1, 3, dtype=torch.long), return_state=True)
    h2, c2 = model.detach_state((h, c))
    assert torch.equal(h2, h) and not h2.requires_grad and not c2.requires_grad


def test_lstm_forget_bias_sets_the_effective_gate_bias():
    H, fb = 12, 1.0
    model = build("lstm", forget_bias=fb)
    lstm = model.rnn
    for k in range(2):
        b = getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")  # (4H,) [i, f, g, o]
        assert torch.all(b[H : 2 * H] == fb)
        assert not torch.all(b[:H] == fb)  # the other gates keep PyTorch's init
    # Functional check that chunk 1 really is the forget gate: with zero input and h0 = 0 every
    # gate is sigmoid/tanh of its bias, so c1 = sigmoid(f) * c0 + sigmoid(i) * tanh(g).
    b = lstm.bias_ih_l0 + lstm.bias_hh_l0
    c0 = torch.full((2, 1, H), 0.5)
    with torch.no_grad():
        _, (_, c1) = lstm(torch.zeros(1, 1, 12), (torch.zeros(2, 1, H), c0))
    expected = torch.sigmoid(torch.tensor(fb)) * 0.5 + torch.sigmoid(b[:H]) * torch.tanh(
        b[2 * H : 3 * H]
    )
    torch.testing.assert_close(c1[0, 0], expected.detach(), atol=1e-6, rtol=0)


def test_forget_bias_only_exists_for_lstm():
    with pytest.raises(ArchlabError, match="forget_bias"):
        create_model("gru", forget_bias=1.0)


# ---- GPT KV cache and positions ---------------------------------------------------------------


@pytest.mark.parametrize(
    "positions, attention", [("learned", "sdpa"), ("sinusoidal", "sdpa"), ("none", "naive")]
)
def test_gpt_cached_decoding_equals_full_forward(positions, attention):
    model = build("gpt", positions=positions, attention=attention).eval()
    idx = torch.randint(0, 11, (2, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(idx)  # (2, 16, V)
        out, cache = model(idx[:, :7], use_cache=True)  # prefill
        parts = [out]
        out, cache = model(idx[:, 7:12], past_kv=cache, use_cache=True)  # a chunk after a cache
        parts.append(out)
        for t in range(12, 16):  # one token at a time
            out, cache = model(idx[:, t : t + 1], past_kv=cache, use_cache=True)
            parts.append(out)
    assert len(cache) == 2 and cache[0][0].shape == (2, 2, 16, 8)  # (B, nh, T, hs) per layer
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_gpt_generate_with_cache_equals_recomputation(positions):
    # block_size 16, prompt 5 + 20 new: the learned model must crop (and rebuild its cache).
    model = build("gpt", positions=positions, max_seq_len=16)
    prompt = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(6))
    greedy = model.generate(prompt, 20, temperature=0.0)
    ref = prompt
    with torch.no_grad():
        model.eval()
        for _ in range(20):
            ref = torch.cat((ref, model(ref[:, -16:])[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(greedy, ref)
    assert torch.equal(greedy, model.generate(prompt, 20, temperature=0.0, use_cache=False))
    kw = dict(temperature=1.0, top_k=5)
    a = model.generate(prompt, 20, generator=torch.Generator().manual_seed(7), **kw)
    b = model.generate(
        prompt, 20, generator=torch.Generator().manual_seed(7), use_cache=False, **kw
    )
    assert a.shape == (2, 25) and torch.equal(a, b)


def test_gpt_generate_restores_training_mode():
    model = build("gpt").train()
    model.generate(torch.zeros(1, 1, dtype=torch.long), 2)
    assert model.training


def test_gpt_sequence_bounds():
    learned = build("gpt")  # block 16
    with pytest.raises(ArchlabError, match="block_size=16"):
        learned(torch.zeros(1, 17, dtype=torch.long))
    sinus = build("gpt", positions="sinusoidal")  # max_seq_len defaults to 4 * block_size
    assert sinus.config.max_seq_len == 64
    assert sinus(torch.zeros(1, 64, dtype=torch.long)).shape == (1, 64, 11)
    with pytest.raises(ArchlabError, match="max_seq_len=64"):
        sinus(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="max_seq_len"):
        GPTConfig(block_size=16, max_seq_len=32)  # learned positions cannot extend


def test_sinusoidal_positions_match_vaswani_formula():
    pe = gpt_mod.sinusoidal_positions(torch.arange(5), 6)  # (5, 6)
    for p in range(5):
        for i in range(3):
            w = p / 10000 ** (2 * i / 6)
            assert pe[p, 2 * i].item() == pytest.approx(torch.sin(torch.tensor(w)).item(), abs=1e-6)
            assert pe[p, 2 * i + 1].item() == pytest.approx(
                torch.cos(torch.tensor(w)).item(), abs=1e-6
            )


def test_gpt_residual_projections_use_scaled_init():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, layers=8, d_model=64, heads=2, block_size=8))
    std = model.blocks[0].attn.proj.weight.std().item()
    assert std == pytest.approx(0.02 / 4.0, rel=0.1)  # 0.02 / sqrt(2 * 8)
    assert model.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.1)


# ---- weight tying and parameter counts --------------------------------------------------------


def gpt_params(V, T, L, d, d_ff, tied=True, learned=True):
    """Hand count (bias=True): embeddings, per block 2 LayerNorms + qkv + proj + 2 MLP Linears,
    final LayerNorm, lm_head weight only if untied (it has no bias)."""
    block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * d_ff + d_ff) + (d_ff * d + d)
    return V * d + (T * d if learned else 0) + L * block + 2 * d + (0 if tied else V * d)


def test_gpt_param_count_and_tying():
    tied = build("gpt")
    assert tied.lm_head.weight is tied.tok_emb.weight
    assert tied.lm_head.weight.data_ptr() == tied.tok_emb.weight.data_ptr()
    assert n_params(tied) == gpt_params(11, 16, 2, 16, 64)
    untied = build("gpt", tie_weights=False, positions="sinusoidal")
    assert untied.lm_head.weight.data_ptr() != untied.tok_emb.weight.data_ptr()
    assert n_params(untied) == gpt_params(11, 16, 2, 16, 64, tied=False, learned=False)
    assert n_params(create_model("gpt-nano")) == gpt_params(65, 64, 4, 128, 512) == 809_856


def rnn_lm_params(cell, V, E, H, L, tied):
    """Embedding V*E; per layer g*H*(in + H) weights + 2*g*H biases (b_ih and b_hh, PyTorch's
    convention), g = 1/3/4 gates for rnn/gru/lstm; decoder H*V (+V bias), weight shared if tied."""
    g = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    rec = sum(g * H * ((E if k == 0 else H) + H) + 2 * g * H for k in range(L))
    return V * E + rec + (0 if tied else H * V) + V


@pytest.mark.parametrize("cell", RNN_CELLS)
@pytest.mark.parametrize("tied", [False, True])
def test_rnn_param_count_and_tying(cell, tied):
    model = build(cell, tie_weights=tied)
    assert (model.decoder.weight.data_ptr() == model.embedding.weight.data_ptr()) == tied
    assert n_params(model) == rnn_lm_params(cell, 11, 12, 12, 2, tied)
    wide = build(cell, hidden_size=20, layers=3)
    assert n_params(wide) == rnn_lm_params(cell, 11, 12, 20, 3, False)


def test_tying_needs_equal_widths():
    with pytest.raises(ValueError, match="hidden_size"):
        create_model("lstm", d_model=12, hidden_size=20, tie_weights=True)


@pytest.mark.parametrize(
    "name, bad, field",
    [
        ("gpt", dict(d_model=16, heads=3), "heads"),
        ("gpt", dict(block_size=0), "block_size"),
        ("gpt", dict(positions="rotary"), "positions"),
        ("gpt", dict(attention="flash"), "attention"),
        ("gpt", dict(positions="sinusoidal", d_model=15, heads=1), "d_model"),
        ("gpt", dict(dropout=1.0), "dropout"),
        ("lstm", dict(layers=0), "layers"),
        ("gru", dict(vocab_size=0), "vocab_size"),
    ],
)
def test_bad_config_names_the_field(name, bad, field):
    with pytest.raises(ValueError, match=field):
        create_model(name, **bad)


# ---- attention implementations, padding, embeddings -------------------------------------------


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "none"])
def test_gpt_naive_attention_equals_sdpa_in_outputs_and_gradients(positions):
    sdpa = randomized(build("gpt", positions=positions)).eval()
    naive = build("gpt", positions=positions, attention="naive").eval()
    naive.load_state_dict(sdpa.state_dict())
    idx = torch.randint(0, 11, (3, 16), generator=torch.Generator().manual_seed(2))
    a, b = sdpa(idx), naive(idx)  # (3, 16, V)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    assert (a - b).abs().max() < 1e-5 < a.abs().max()  # not vacuous
    a.square().sum().backward()
    b.square().sum().backward()
    for (name, p), q in zip(sdpa.named_parameters(), naive.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_naive_attention_keeps_the_n_by_n_scores_for_backward():
    T, hs = 24, 8
    q, k, v = (torch.randn(1, 2, T, hs, requires_grad=True) for _ in range(3))
    for impl in ("naive", "sdpa"):
        shapes = []
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t, shapes=shapes: shapes.append(t.shape) or t, lambda t: t
        ):
            y = gpt_mod.attend(q, k, v, causal=True, impl=impl)  # (1, 2, T, hs)
        assert y.shape == (1, 2, T, hs)
        has_scores = any(tuple(s[-2:]) == (T, T) for s in shapes)
        assert has_scores == (impl == "naive"), (impl, shapes)
    ref = (
        torch.softmax(
            (q @ k.transpose(-2, -1)) / hs**0.5 + torch.full((T, T), float("-inf")).triu(1), -1
        )
        @ v
    )
    torch.testing.assert_close(gpt_mod.attend(q, k, v, causal=True, impl="naive"), ref)


def _bf16_qkv(T: int, S: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = ((2, 3, T, 16), (2, 3, S, 16), (2, 3, S, 16))
    return [torch.randn(s, generator=g).bfloat16().requires_grad_() for s in shapes]


@pytest.mark.parametrize("mask", ["none", "causal", "bool", "float"])
@pytest.mark.parametrize("T", [40, 160])  # 40x40 scores: explicit path; 160x160: fp32 flash
def test_cpu_bf16_attention_equals_fp32_sdpa_on_the_same_inputs(mask, T):
    from archlab.models.layers import EXPLICIT_MAX_SCORES, attention

    assert (T * T <= EXPLICIT_MAX_SCORES) == (T == 40)  # both paths are exercised
    q, k, v = _bf16_qkv(T, T)
    g = torch.Generator().manual_seed(1)
    m = {
        "none": None,
        "causal": None,
        "bool": torch.rand(T, T, generator=g) > 0.3,
        "float": torch.randn(T, T, generator=g),
    }[mask]
    if m is not None and m.dtype == torch.bool:
        m[:, 0] = True  # every query keeps one key (an all-masked row is NaN in both)
    with torch.autocast("cpu", torch.bfloat16):
        y = attention(q, k, v, attn_mask=m, is_causal=mask == "causal")  # (2, 3, T, 16)
    assert y.dtype == torch.bfloat16
    leaves = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref = F.scaled_dot_product_attention(*leaves, attn_mask=m, is_causal=mask == "causal")
    torch.testing.assert_close(y.float(), ref, atol=2e-2, rtol=2e-2)
    y.float().square().sum().backward()
    ref.square().sum().backward()
    for name, t, r in zip("qkv", (q, k, v), leaves, strict=True):
        assert (t.grad.float() - r.grad).abs().max() < 0.05 * r.grad.abs().max(), name


def test_cpu_bf16_explicit_attention_is_exactly_causal():
    """Under bf16 on the CPU short sequences take the explicit path: keys after t must get weight
    exactly 0, so changing them changes nothing at <= t, bit for bit."""
    from archlab.models.layers import attention

    q, k, v = (t.detach() for t in _bf16_qkv(32, 32))
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 20:], v2[:, :, 20:] = 7.0, -7.0
    with torch.autocast("cpu", torch.bfloat16):
        a = attention(q, k, v, is_causal=True)
        b = attention(q, k2, v2, is_causal=True)
    assert torch.equal(a[:, :, :20], b[:, :, :20])
    assert not torch.equal(a[:, :, 20:], b[:, :, 20:])  # negative control


def _padded(seqs: list[torch.Tensor], T: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids padded with token 0 on ``side`` and the (B, T) mask, True = real token."""
    idx = torch.zeros(len(seqs), T, dtype=torch.long)
    real = torch.zeros(len(seqs), T, dtype=torch.bool)
    for i, s in enumerate(seqs):
        cols = slice(0, len(s)) if side == "right" else slice(T - len(s), T)
        idx[i, cols], real[i, cols] = s, True
    return idx, real


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize(
    "positions, attention", [("learned", "sdpa"), ("sinusoidal", "naive"), ("none", "sdpa")]
)
def test_gpt_key_padding_mask_gives_each_sequence_its_unpadded_logits(side, positions, attention):
    model = randomized(build("gpt", positions=positions, attention=attention)).eval()
    g = torch.Generator().manual_seed(5)
    seqs = [torch.randint(1, 11, (n,), generator=g) for n in (16, 11, 5, 1)]
    idx, real = _padded(seqs, 16, side)
    with torch.no_grad():
        masked = model(idx, key_padding_mask=real)  # (4, 16, V)
        unmasked = model(idx)
        worst_masked = worst_unmasked = 0.0
        for i, s in enumerate(seqs):
            alone = model(s[None])[0]  # (n, V)
            worst_masked = max(worst_masked, (masked[i][real[i]] - alone).abs().max().item())
            worst_unmasked = max(worst_unmasked, (unmasked[i][real[i]] - alone).abs().max().item())
    assert worst_masked < 1e-5
    assert torch.isfinite(masked).all()  # pad queries see themselves: no empty softmax row
    if side == "left":  # negative control: without the mask, left pads leak into real tokens
        assert worst_unmasked > 1e-2


def test_gpt_key_padding_mask_with_a_cache_and_a_bad_shape():
    model = randomized(build("gpt", positions="sinusoidal")).eval()
    idx, real = _padded([torch.arange(1, 11), torch.arange(1, 5)], 12, "left")
    with torch.no_grad():
        full = model(idx, key_padding_mask=real)  # (2, 12, V)
        out, cache = model(idx[:, :8], key_padding_mask=real[:, :8], use_cache=True)
        rest, _ = model(idx[:, 8:], past_kv=cache, use_cache=True, key_padding_mask=real)
    torch.testing.assert_close(torch.cat((out, rest), 1)[real], full[real], atol=1e-5, rtol=0)
    with pytest.raises(ArchlabError, match="key_padding_mask"):
        model(idx, key_padding_mask=real[:, :5])


@pytest.mark.parametrize(
    "positions, attention", [("learned", "sdpa"), ("sinusoidal", "naive"), ("none", "sdpa")]
)
def test_gpt_last_only_equals_the_full_forward_in_outputs_gradients_and_cache(positions, attention):
    model = randomized(build("gpt", positions=positions, attention=attention))
    idx = torch.randint(0, 11, (3, 16), generator=torch.Generator().manual_seed(8))
    y = torch.tensor([1, 4, 7])

    def grads(last_only):
        model.zero_grad()
        out = model(idx, last_only=True) if last_only else model(idx)[:, -1:]
        F.cross_entropy(out[:, -1], y).backward()
        return out, [p.grad.clone() for p in model.parameters()]

    full, g_full = grads(False)
    last, g_last = grads(True)
    assert last.shape == (3, 1, 11)
    torch.testing.assert_close(last, full, atol=1e-5, rtol=0)
    for a, b in zip(g_last, g_full, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # The saving is real: the last block's MLP sees one position, the first block's all 16.
    seen = []
    hooks = [
        b.mlp.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
        for b in model.blocks
    ]
    model(idx, last_only=True)
    for h in hooks:
        h.remove()
    assert seen == [16, 1]
    with torch.no_grad():  # the cache stays whole, padding masks still apply
        _, cache = model.eval()(idx, use_cache=True, last_only=True)
        assert cache[-1][0].shape == (3, 2, 16, 8)
        real = torch.ones(3, 16, dtype=torch.bool)
        real[1, :6] = False  # left padding
        masked = model(idx, key_padding_mask=real)[:, -1:]
        torch.testing.assert_close(
            model(idx, key_padding_mask=real, last_only=True), masked, atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("name", [*RNN_CELLS, "gpt"])
def test_inputs_embeds_equals_ids(name):
    model = randomized(build(name, positions="sinusoidal") if name == "gpt" else build(name))
    model.eval()
    idx = torch.randint(0, 11, (2, 9), generator=torch.Generator().manual_seed(3))
    x = model.embed(idx).detach().requires_grad_()  # (2, 9, C)
    out = model(inputs_embeds=x)
    assert torch.equal(out, model(idx))
    out[:, -1].sum().backward()
    assert x.grad.shape == x.shape and x.grad[:, 0].abs().sum() > 0  # reaches the first input
    with pytest.raises(ArchlabError, match="exactly one"):
        model(idx, inputs_embeds=x)
    with pytest.raises(ArchlabError, match="exactly one"):
        model()


@pytest.mark.parametrize("cell", RNN_CELLS)
def test_rnn_lengths_pack_a_right_padded_batch(cell):
    model = randomized(build(cell), std=0.5).eval()
    g = torch.Generator().manual_seed(9)
    seqs = [torch.randint(1, 11, (n,), generator=g) for n in (10, 7, 3, 1)]
    idx, _ = _padded(seqs, 10, "right")
    lengths = torch.tensor([len(s) for s in seqs])
    with torch.no_grad():
        packed, st = model(idx, return_state=True, lengths=lengths)
        plain, st_plain = model(idx, return_state=True)
        h, h_plain = (st[0], st_plain[0]) if cell == "lstm" else (st, st_plain)  # (L, B, H)
        for i, s in enumerate(seqs):
            alone, st_a = model(s[None], return_state=True)
            h_a = st_a[0] if cell == "lstm" else st_a
            torch.testing.assert_close(packed[i, : len(s)], alone[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(h[:, i], h_a[:, 0], atol=1e-5, rtol=0)
            if len(s) < 10:  # negative control: unpacked, the state runs on over the pads
                assert (h_plain[:, i] - h_a[:, 0]).abs().max() > 1e-3
    with pytest.raises(ArchlabError, match="lengths"):
        model(idx, lengths=torch.tensor([11, 1, 1, 1]))


# ---- precision and devices --------------------------------------------------------------------


@pytest.mark.parametrize("name", [*RNN_CELLS, "gpt"])
def test_bf16_autocast_matches_fp32(name):
    model = build(name).eval()
    idx = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        ref = model(idx)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(idx)
    assert low.dtype == torch.bfloat16
    # bf16 keeps 8 significant bits (relative rounding 2^-8 ≈ 0.4% per op); measured worst case
    # here is ~0.8% of the logit scale, so allow 2.5% of it (garbage would be ~100%).
    assert (low.float() - ref).abs().max() <= 0.025 * ref.abs().max()


@pytest.mark.gpu
@pytest.mark.parametrize("name", [*RNN_CELLS, "gpt"])
def test_lm_on_cuda_matches_cpu_and_decodes_consistently(name):
    model = build(name).eval()
    idx = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        ref = model(idx)
        model.cuda()
        out = model(idx.cuda())
    torch.testing.assert_close(out.cpu(), ref, atol=1e-3, rtol=1e-3)
    greedy = model.generate(idx.cuda()[:, :4], 10, temperature=0.0)
    recomputed = idx.cuda()[:, :4]
    with torch.no_grad():
        for _ in range(10):
            nxt = model(recomputed)[:, -1].argmax(-1, keepdim=True)
            recomputed = torch.cat((recomputed, nxt), dim=1)
    assert torch.equal(greedy, recomputed)
