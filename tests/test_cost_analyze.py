"""Oracles for ``archlab.cost.analyze`` and ``archlab cost model``.

References: ``sum(p.numel())`` over unique parameters, and FlopCounterMode run for real on models
where it is right (MLP, conv net, explicit-matmul attention, an LSTMCell loop).
"""

from __future__ import annotations

import importlib
import json

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from archlab.cost import analyze
from archlab.cost.types import LayerCost
from archlab.errors import ArchlabError
from tests.fixtures_models import (
    CumprodNet,
    LSTMCellLoop,
    LSTMTagger,
    TinyGPT,
    conv_net,
    mlp,
)

# `archlab.cost.analyze` the attribute is the function; the module is reached through importlib.
analyze_mod = importlib.import_module("archlab.cost.analyze")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def op_level_only(monkeypatch):
    """Measure every module at op level (no formulas), whatever archlab.cost.layers provides."""
    monkeypatch.setattr(analyze_mod, "_module_cost_fn", lambda: None)


def flopcounter(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(forward, backward) FLOPs by FlopCounterMode on a real pass; loss = output.sum()."""
    with FlopCounterMode(display=False) as fwd:
        out = model(x)
    with FlopCounterMode(display=False) as bwd:
        out.sum().backward()
    model.zero_grad(set_to_none=True)
    return fwd.get_total_flops(), bwd.get_total_flops()


def tokens(b=2, t=16, vocab=64):
    return torch.randint(0, vocab, (b, t))


CASES = {
    "mlp": (mlp, lambda: torch.randn(4, 12)),
    "conv": (lambda: conv_net(groups=1), lambda: torch.randn(2, 3, 16, 16)),
    "gpt_math_attention": (lambda: TinyGPT(math_attention=True), tokens),
}


def test_params_count_tied_weights_once():
    m = TinyGPT()
    rep = analyze(m, tokens())
    unique = {id(p): p.numel() for p in m.parameters()}
    with_dups = sum(p.numel() for _, p in m.named_parameters(remove_duplicate=False))
    assert rep.params == sum(unique.values()) == 28_032
    assert with_dups - rep.params == 64 * 32  # the tied lm_head/wte matrix, once
    assert sum(r.params for r in rep.layers) == rep.params
    assert next(r for r in rep.layers if r.name == "lm_head").params == 0


@pytest.mark.parametrize("case", CASES)
def test_dense_forward_and_backward_equal_flopcountermode(case, op_level_only):
    build, make_x = CASES[case]
    m, x = build(), make_x()
    fwd, bwd = flopcounter(m, x)
    rep = analyze(m, x)
    assert rep.flops_forward_dense == fwd > 0
    assert rep.flops_backward_dense == bwd > 0
    rec = rep.reconciliation
    assert rec["difference"] == 0 and rec["items"] == [] and rec["consistent"]
    assert rep.uncounted == []


@pytest.mark.parametrize("case", CASES)
def test_formulas_when_present_agree_with_flopcountermode(case):
    build, make_x = CASES[case]
    m, x = build(), make_x()
    fwd, bwd = flopcounter(m, x)
    rep = analyze(m, x)
    assert rep.flops_forward_dense == fwd
    assert rep.flops_backward_dense == bwd


def test_grouped_and_transposed_conv(op_level_only):
    m, x = conv_net(groups=2), torch.randn(2, 3, 16, 16)
    fwd, bwd = flopcounter(m, x)
    rep = analyze(m, x)
    assert rep.flops_forward_dense == fwd
    # FlopCounterMode sizes a grouped conv's weight gradient with C_in instead of C_in/groups,
    # i.e. `groups` times too large. True MACs: B * C_out * H_out * W_out * (C_in/g) * k * k.
    grad_w = 2 * (2 * 16 * 7 * 7 * (8 // 2) * 3 * 3)
    assert rep.flops_backward_dense == bwd - (2 - 1) * grad_w
    up, y = nn.ConvTranspose2d(4, 6, 3, stride=2), torch.randn(2, 4, 5, 5, requires_grad=True)
    fwd_t, _ = flopcounter(up, y)
    assert analyze(up, y).flops_forward_dense == fwd_t == 2 * (2 * 4 * 5 * 5) * (6 * 3 * 3)


def test_sdpa_counts_equal_explicit_matmul_attention(op_level_only):
    fused, ref = TinyGPT(), TinyGPT(math_attention=True)
    ref.load_state_dict(fused.state_dict())
    x = tokens()
    fwd, bwd = flopcounter(ref, x)
    rep = analyze(fused, x)
    assert rep.flops_forward_dense == fwd
    assert rep.flops_backward_dense == bwd
    # FlopCounterMode counts 0 for the CPU flash kernel; the reconciliation says so per module.
    rec = rep.reconciliation
    # 2 layers x 2 products (QK^T, AV) x 2 FLOPs/MAC x B*heads*T*T*d_head MACs
    attn = 2 * 2 * 2 * (2 * 4 * 16 * 16 * 8)
    assert rec["difference"] == rec["explained"] == attn
    assert [i["module"] for i in rec["items"]] == ["blocks.0.attn", "blocks.1.attn"]
    assert all("_scaled_dot_product_flash_attention_for_cpu" in i["reason"] for i in rec["items"])
    assert all("no rule" in i["reason"] for i in rec["items"])


def test_fused_lstm_counts_equal_lstmcell_loop(op_level_only):
    tagger = LSTMTagger()
    ref = LSTMCellLoop(tagger.lstm)
    x = torch.randn(2, 7, 16, requires_grad=True)
    fwd, bwd = flopcounter(ref, x)
    rep = analyze(tagger.lstm, x)
    assert rep.flops_forward_dense == fwd == 2 * 2 * 7 * 4 * 24 * (16 + 24)
    # The fused kernel also computes d(h0), which the loop (h0 = zeros, no grad) skips: 1 matmul.
    assert rep.flops_backward_dense == bwd + 2 * 2 * 4 * 24 * 24
    assert rep.reconciliation["flopcountermode_forward"] == 0  # fused CPU LSTM: FCM counts 0
    (item,) = rep.reconciliation["items"]
    assert "mkldnn_rnn_layer" in item["reason"] and item["difference"] == fwd
    # and our op-level count of the unfused loop agrees with FlopCounterMode too
    assert analyze(ref, x).flops_forward_dense == fwd


def test_formula_rows_lstm_and_encoder_layer():
    """With archlab's formulas: nn.LSTM and nn.TransformerEncoderLayer are single formula rows."""
    tagger = LSTMTagger()
    ref = LSTMCellLoop(tagger.lstm)
    x = torch.randn(2, 7, 16, requires_grad=True)
    fwd, bwd = flopcounter(ref, x)
    (row,) = analyze(tagger.lstm, x).layers
    assert row.source == "formula"
    # the formula skips the step-0 recurrent input-gradient (h0 is a constant), like the loop
    assert (row.flops_forward_dense, row.flops_backward_dense) == (fwd, bwd)
    assert any("op-level measurement gives" in n for n in row.notes)  # fused kernel computes dh0

    enc = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    y = torch.randn(2, 10, 32, requires_grad=True)
    with sdpa_kernel(SDPBackend.MATH):  # the unfused reference FlopCounterMode counts fully
        fwd, bwd = flopcounter(enc, y)
    rep = analyze(enc, y)  # (fused CPU SDPA inside: FlopCounterMode alone would miss QK^T, AV)
    assert rep.reconciliation["difference"] == 2 * 2 * (2 * 4 * 10 * 10 * 8)
    assert [r.source for r in rep.layers] == ["formula"]
    assert rep.flops_forward_dense == fwd and rep.flops_backward_dense == bwd
    assert rep.params == sum(p.numel() for p in enc.parameters())


class _Twice(nn.Module):
    """One Linear applied twice (weight sharing across calls) and a dict output."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": self.fc(torch.relu(self.fc(x)))}  # (B, 8)


def test_module_called_twice_and_custom_loss(op_level_only):
    m, x = _Twice(), torch.randn(4, 8, requires_grad=True)
    with FlopCounterMode(display=False) as fwd:
        out = m(x)
    with FlopCounterMode(display=False) as bwd:
        out["y"].pow(2).mean().backward()
    rep = analyze(m, x, loss_fn=lambda o: o["y"].pow(2).mean())
    (fc,) = (r for r in rep.layers if r.name == "fc")
    assert fc.calls == 2 and fc.params == rep.params == 72
    assert rep.flops_forward_dense == fwd.get_total_flops() == 2 * (2 * 4 * 8 * 8)
    assert rep.flops_backward_dense == bwd.get_total_flops()
    # the loss is not the model: its pointwise ops (pow, mean) and their backward are in no row
    assert rep.flops_forward_pointwise == 2 * 4 * 8 + 4 * 8  # 2 bias adds + 1 relu
    assert [r.name for r in rep.layers] == ["_Twice", "fc"]
    assert analyze(m, x, backward=False).flops_backward_dense == 0


class _PlainTensorAttr(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.scale = torch.full((4,), 2.0)  # a plain attribute, neither parameter nor buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.scale  # (B, 4)


def test_plain_tensor_attributes_work_under_fake_tensors(op_level_only):
    m = _PlainTensorAttr()
    rep = analyze(m, torch.randn(2, 4))
    assert (rep.flops_forward_dense, rep.flops_forward_pointwise) == (2 * 2 * 4 * 4, 2 * 2 * 4)
    assert torch.equal(m.scale, torch.full((4,), 2.0))


def test_uncounted_op_is_listed_never_silent(op_level_only):
    rep = analyze(CumprodNet(), torch.randn(3, 8))
    ops = {(u["op"], u["phase"]) for u in rep.uncounted}
    assert ("aten.cumprod", "forward") in ops
    assert all(u["calls"] >= 1 and u["module"] == "CumprodNet" for u in rep.uncounted)
    assert "UNCOUNTED" in str(rep) and "aten.cumprod" in str(rep)


def test_module_unchanged_no_hooks_no_state_leak():
    m = TinyGPT()
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    buffers = [n for n, _ in m.named_buffers()]
    global_hooks = [
        len(d)
        for d in (
            nn.modules.module._global_forward_hooks,
            nn.modules.module._global_forward_pre_hooks,
            nn.modules.module._global_backward_hooks,
        )
    ]
    x = tokens()
    first = analyze(m, x).to_json()
    second = analyze(m, x).to_json()
    assert first == second
    assert m.state_dict().keys() == before.keys()
    assert all(torch.equal(m.state_dict()[k], v) for k, v in before.items())
    assert [n for n, _ in m.named_buffers()] == buffers
    assert all(p.grad is None for p in m.parameters())
    assert m.lm_head.weight is m.wte.weight and m.training
    for mod in m.modules():
        assert not (mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks)
    assert global_hooks == [
        len(nn.modules.module._global_forward_hooks),
        len(nn.modules.module._global_forward_pre_hooks),
        len(nn.modules.module._global_backward_hooks),
    ]


def test_batchnorm_running_stats_untouched():
    m = conv_net().train()
    before = m[1].running_mean.clone(), int(m[1].num_batches_tracked)
    analyze(m, torch.randn(2, 3, 8, 8), fake=False)
    assert torch.equal(m[1].running_mean, before[0]) and int(m[1].num_batches_tracked) == before[1]


@pytest.mark.parametrize(
    "build,make_x",
    [(TinyGPT, tokens), (LSTMTagger, lambda: torch.randint(0, 50, (2, 5))), CASES["conv"]],
)
def test_fake_tensor_analysis_equals_real(build, make_x):
    m, x = build().eval(), make_x()
    fake, real = analyze(m, x).to_json(), analyze(m, x, fake=False).to_json()
    assert fake.pop("fake_tensors") and not real.pop("fake_tensors")
    if build is LSTMTagger:  # the fused LSTM's workspace has no size under fake tensors: noted
        (f_row,) = (r for r in fake["layers"] if r["name"] == "lstm")
        (r_row,) = (r for r in real["layers"] if r["name"] == "lstm")
        workspace = [n for n in f_row["notes"] if "workspace" in n]
        assert len(workspace) == 1 and f_row.pop("notes") == sorted(r_row.pop("notes") + workspace)
        assert f_row.pop("activation_bytes") < r_row.pop("activation_bytes")
        for d in (fake, real):
            d.pop("activation_bytes")
    assert fake == real


def test_dtype_scales_activation_bytes(op_level_only):
    m, x = mlp(), torch.randn(4, 12)
    f32, bf16 = analyze(m, x), analyze(m, x, dtype=torch.bfloat16)
    assert bf16.activation_bytes * 2 == f32.activation_bytes > 0
    assert bf16.flops_forward_dense == f32.flops_forward_dense
    # saved for backward: x (4x12), ReLU's output (4x32, also Linear 2's input: one storage),
    # Tanh's output (4x32, also Linear 3's input); 4 bytes per float32
    assert f32.activation_bytes == 4 * 4 * (12 + 32 + 32)


def test_formula_module_absorbs_its_children(monkeypatch):
    """A module type with a formula is one row with the formula's numbers; children vanish."""

    def module_cost(module, inputs, output, kwargs=None):
        if type(module).__name__ != "Attention":
            return None
        return LayerCost(
            layer="attention",
            config={},
            convention="pytorch",
            terms=[],
            params=0,
            flops_forward_dense=1000,
            flops_forward_pointwise=10,
            flops_backward_dense=2000,
        )

    monkeypatch.setattr(analyze_mod, "_module_cost_fn", lambda: module_cost)
    m = TinyGPT()
    rep = analyze(m, tokens())
    names = [r.name for r in rep.layers]
    assert "blocks.0.attn" in names and "blocks.0.attn.qkv" not in names
    attn = next(r for r in rep.layers if r.name == "blocks.0.attn")
    assert attn.source == "formula"
    assert (attn.flops_forward_dense, attn.flops_backward_dense) == (1000, 2000)
    assert attn.params == sum(p.numel() for p in m.blocks[0].attn.parameters())
    assert rep.params == 28_032
    # the formula's 1000 vs FlopCounterMode's qkv+proj products: a listed, explained difference
    item = next(i for i in rep.reconciliation["items"] if i["module"] == "blocks.0.attn")
    assert item["ours"] == 1000 and "formula" in item["reason"]
    assert rep.reconciliation["explained"] == rep.reconciliation["difference"]


def test_table_names_units_and_folds_depth():
    rep = analyze(TinyGPT(), tokens())
    text = str(rep)
    for needle in ("Total params: 28,032", "FLOPs = 2 x multiply-adds", "bytes", "FlopCounterMode"):
        assert needle in text
    top = rep.table(depth=0).splitlines()
    assert sum(1 for line in top if "(TinyGPT)" in line) == 1
    assert f"{rep.flops_forward_dense:,}" in rep.table(depth=0)


def test_not_a_module_is_an_error():
    with pytest.raises(ArchlabError):
        analyze(lambda x: x, torch.randn(2))


def test_cli_json_has_report_keys(cli):
    r = cli("cost", "model", "tests.fixtures_models:tiny_gpt", "--input-shape", "2x16",
            "--input-dtype", "long", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for key in ("params", "flops_forward_dense", "flops_forward_pointwise",
                "flops_backward_dense", "activation_bytes", "layers", "uncounted",
                "reconciliation"):  # fmt: skip
        assert key in d
    assert d["params"] == 28_032 and d["layers"][0]["depth"] == 0
    assert "shapes only" in d["input_note"] and "2x16" in d["input_note"]


def test_cli_table(capsys):
    from archlab.cli import main

    code = main(["cost", "model", "tests.fixtures_models:lstm_tagger", "--input-shape", "2x5",
                 "--input-dtype", "long", "--depth", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "lstm (LSTM)" in out and "Total params: 6,082" in out and "fake tensors" in out
    assert main(["cost", "model", "tests.fixtures_models:mlp", "--input-shape", "3x12",
                 "--no-backward", "--json"]) == 0  # fmt: skip
    d = json.loads(capsys.readouterr().out)
    assert d["flops_backward_dense"] == 0 and d["flops_forward_dense"] == 2 * 3 * (
        12 * 32 + 32 * 32 + 32 * 5
    )


BAD_ARGS = [
    ["nosuch.module:x", "--input-shape", "2"],
    ["tests.fixtures_models:nosuch", "--input-shape", "2"],
    ["tests.fixtures_models", "--input-shape", "2"],
    ["tests.fixtures_models:mlp", "--input-shape", "2xq"],
    ["tests.fixtures_models:mlp", "--input-shape", "0x12"],
    ["tests.fixtures_models:mlp", "--input-shape", "2x12", "--input-dtype", "complex7"],
    ["tests.fixtures_models:mlp", "--input-shape", "2x5"],  # wrong width: the model fails
    ["tests.fixtures_models:__all__", "--input-shape", "2x12"],  # not callable / not a module
    ["tests.fixtures_models:mlp", "--input-shape", "2x12", "--depth", "-1"],
]


@pytest.mark.parametrize("args", BAD_ARGS)
def test_cli_bad_input_exits_2_with_one_line(args, capsys):
    from archlab.cli import main

    assert main(["cost", "model", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("archlab cost: error:")


def test_cli_bad_input_subprocess_one_line(cli):
    r = cli("cost", "model", *BAD_ARGS[0])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
