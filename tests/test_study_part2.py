"""archlab study: one oracle per mechanism the claims measure (receptive fields, shift consistency,
attention distance, probes, the synthetic tasks, FLOP counts, BlurPool, local attention) and the
study's training stack (one Trainer; runs shared across claims)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.cost import layers
from archlab.models import create_model
from archlab.models.vit import mean_attention_distance
from archlab.study.claims import c1_hierarchical_features as c1
from archlab.study.claims import c2_parameter_efficiency as c2
from archlab.study.claims import c3_translation_invariance as c3
from archlab.study.claims import v3_quadratic_patches as v3
from archlab.study.claims import v4_parallel_processing as v4
from archlab.study.tasks import Recall, TwoMarks
from archlab.study.vision import (
    effective_rf,
    receptive_fields,
    uniform_attention_distance,
    window_mean_distance,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_receptive_field_recurrence_on_a_known_stack():
    net = nn.Sequential(
        nn.Conv2d(1, 1, 3),
        nn.MaxPool2d(2),
        nn.Conv2d(1, 1, 3),
        nn.Conv2d(1, 1, 3, stride=2),
        nn.Conv2d(1, 1, 3, dilation=2),
    )
    # by hand: 3; pool -> 4 (jump 2); +2·2 = 8; +2·2 = 12 (jump 4); +2·2·4 = 28
    assert [r["rf"] for r in receptive_fields(net)] == [3, 8, 12, 28]
    assert [r["jump"] for r in receptive_fields(net)] == [1, 2, 4, 4]
    assert [r["centre0"] for r in receptive_fields(net)] == [1, 3.5, 5.5, 13.5]


def test_the_pool_cnn_sees_the_whole_canvas_at_its_last_stage():
    from archlab.study.pools import image_model

    name, cfg = image_model("cnn")
    assert [r["rf"] for r in receptive_fields(create_model(name, **cfg))] == [3, 8, 18, 38]


def test_gradient_support_never_exceeds_the_theoretical_field():
    torch.manual_seed(0)
    cnn = create_model("cnn", image_size=24, channels=(4, 8), convs_per_stage=2, pool="max")
    rows = receptive_fields(cnn)
    assert [r["rf"] for r in rows] == [3, 5, 10, 14]
    for row, e in zip(rows, effective_rf(cnn, torch.randn(4, 1, 24, 24)), strict=True):
        g = torch.tensor(e["grad"])
        ys, xs = torch.nonzero(g, as_tuple=True)
        assert (
            int(ys.max() - ys.min()) + 1 <= row["rf"] and int(xs.max() - xs.min()) + 1 <= row["rf"]
        )
        assert e["erf"] <= row["rf"]
    full = effective_rf(cnn, torch.randn(4, 1, 24, 24), mass=1.0)
    assert [e["erf"] for e in full] == [r["rf"] for r in rows]


def test_consistency_counts_agreeing_shift_pairs():
    # 9 offsets (±1 px): all agree -> 1; 3 classes spread 3/3/3 -> 1/3 per pair of draws
    agree = torch.zeros(9, 5, dtype=torch.long)
    assert c3.consistency(agree, 10) == [1.0]
    spread = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])[:, None].expand(9, 5)
    assert c3.consistency(spread, 10) == [pytest.approx(1 / 3)]


def test_shifts_on_the_canvas_cut_nothing_and_a_circular_cnn_is_exactly_invariant():
    """A roll by <= the 2 px margin of a canvas moves the object without cutting it, so a
    stride-1 circular CNN with global pooling gives the same logits at every offset; a max-pool
    CNN does not (Zhang 2019)."""
    g = torch.Generator().manual_seed(0)
    obj = torch.rand(8, 1, 28, 28, generator=g)
    canvas = nn.functional.pad(obj, (2, 2, 2, 2))
    for dy, dx in ((2, -2), (-1, 1)):
        moved = torch.roll(canvas, (dy, dx), dims=(-2, -1))
        assert moved.sum() == pytest.approx(canvas.sum())  # no pixel of the object left
    torch.manual_seed(0)
    circ = create_model(
        "cnn",
        image_size=32,
        channels=(8, 8),
        convs_per_stage=1,
        pool="none",
        padding_mode="circular",
    ).eval()
    preds = c3.shifted_predictions(circ, canvas, 2)
    assert (preds == preds[12]).all()  # offset (0, 0) is index 12 of the 5x5 grid
    pooled = create_model("cnn", image_size=32, channels=(8, 8, 8), convs_per_stage=1, pool="max")
    with torch.no_grad():
        a = pooled.eval()(canvas)
        b = pooled(torch.roll(canvas, (1, 1), dims=(-2, -1)))
    assert not torch.allclose(a, b, atol=1e-5)


def test_blurpool_is_a_normalized_lowpass_and_less_shift_variant():
    from archlab.models.cnn import BlurPool2d

    bp = BlurPool2d(3)
    flat = torch.ones(1, 3, 8, 8)
    assert torch.allclose(bp(flat), torch.ones(1, 3, 4, 4))  # a constant stays constant
    # Zhang 2019's form: reflect pad, depthwise conv with [1, 2, 1] ⊗ [1, 2, 1] / 16, stride 2
    k = torch.tensor([1.0, 2.0, 1.0])
    kernel = ((k[:, None] * k[None, :]) / 16).expand(3, 1, 3, 3)
    for hw in ((8, 8), (7, 9), (3, 4), (16, 15)):
        x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(hw[0]))
        ref = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel, stride=2, groups=3)
        torch.testing.assert_close(bp(x), ref, atol=1e-6, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # computed in fp32, handed back in bf16
        xb = torch.randn(2, 3, 8, 8).bfloat16()
        assert bp(xb).dtype == torch.bfloat16
        torch.testing.assert_close(bp(xb).float(), bp(xb.float()), atol=1e-2, rtol=1e-2)
    # aliasing: a one-pixel shift changes max-pooled outputs more than blurred ones
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 16, 16, generator=g)
    xs = torch.roll(x, 1, dims=-1)
    mp = nn.MaxPool2d(2)
    mbp = nn.Sequential(nn.MaxPool2d(2, stride=1), BlurPool2d(3))
    assert (mbp(x) - mbp(xs)).abs().mean() < (mp(x) - mp(xs)).abs().mean()
    cnn = create_model("cnn", image_size=32, channels=(4, 8), convs_per_stage=1, pool="blur")
    assert cnn(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_local_attention_window_masks_far_patches_only():
    from archlab.models.vit import window_mask

    cfg = create_model(
        "vit", image_size=16, patch_size=4, d_model=8, heads=2, layers=1, pool="mean", attn_window=1
    ).config
    m = window_mask(cfg)  # 4x4 grid
    assert m.shape == (16, 16) and bool(m[0, 0]) and bool(m[0, 5]) and not bool(m[0, 2])
    assert int(m.sum(1).min()) == 4 and int(m.sum(1).max()) == 9  # corner vs interior patch
    torch.manual_seed(0)
    vit = create_model(
        "vit", image_size=16, patch_size=4, d_model=8, heads=2, layers=1, pool="mean", attn_window=1
    ).eval()
    with torch.no_grad():
        _, (att,) = vit(torch.randn(2, 1, 16, 16), return_attn=True)
    assert float(att[..., ~m].abs().max()) == 0.0  # no weight outside the window


def test_mean_attention_distance_references():
    p = 3
    assert uniform_attention_distance(2, p) == pytest.approx(p * (2 + math.sqrt(2)) / 4)
    cfg = create_model(
        "vit", image_size=12, patch_size=p, d_model=8, heads=2, layers=1, pool="mean"
    ).config
    g = cfg.grid_size
    uniform = torch.full((2, 2, g * g, g * g), 1.0 / (g * g))
    mad = mean_attention_distance(uniform, cfg)
    assert torch.allclose(mad, torch.full((2,), uniform_attention_distance(g, p)), atol=1e-5)
    assert mean_attention_distance(torch.eye(g * g).expand(1, 2, -1, -1), cfg).abs().max() < 1e-6
    assert window_mean_distance(3) == pytest.approx((4 + 4 * math.sqrt(2)) / 9)


def test_linear_probe_is_exact_on_separable_data_and_chance_on_noise():
    gen = torch.Generator().manual_seed(0)
    centers = 5 * torch.randn(3, 6, generator=gen)
    y = torch.randint(3, (300,), generator=gen)
    f = centers[y] + 0.1 * torch.randn(300, 6, generator=gen)
    assert c1.ridge_probe(f[:200], y[:200], f[200:], y[200:], 1e-3, 3) == 1.0
    noise = torch.randn(300, 6, generator=gen)
    assert c1.ridge_probe(noise[:200], y[:200], noise[200:], y[200:], 1e-3, 3) < 0.6


def test_recall_sequences_are_what_they_say():
    t = Recall(noise=16, values=8, keys=8, pairs=3)
    x, y = t.batch(64, 10, torch.Generator().manual_seed(0))
    assert x.shape == (64, t.length(10)) and int(x.max()) < t.vocab
    keys = range(t.noise + t.values, t.noise + t.values + t.keys)
    for r in range(64):
        row = x[r].tolist()
        assert row[-2] == t.query and row[-1] in keys
        where = [i for i, v in enumerate(row[:-1]) if v in keys]
        assert len(where) == 3 and len({row[i] for i in where}) == 3  # distinct keys
        q = where[[row[i] for i in where].index(row[-1])]
        assert row[q + 1] - t.noise == int(y[r])  # the queried key's value
        assert len(row) - 1 - (q + 1) == 10  # d positions before the end
        assert all(t.noise <= row[i + 1] < t.noise + t.values for i in where)


def test_two_marks_labels_and_distances_are_what_they_say():
    t = TwoMarks(size=32, mark=4, noise=0.0)
    marks = t.marks()
    assert len({tuple(s.flatten().tolist()) for s in marks}) == 4
    x, same, d = t.batch(200, [4, 12, 20], torch.Generator().manual_seed(0))
    assert 0.3 < same.float().mean() < 0.7
    for i in range(200):
        ys, xs = torch.nonzero(x[i, 0], as_tuple=True)
        span = max(int(ys.max() - ys.min()), int(xs.max() - xs.min())) + 1
        assert span <= t.span(int(d[i]))  # the two marks lie within d + mark px
    assert t.span(4) == 8


def test_recall_needs_the_state_and_attention_finds_it():
    """A 1-layer GPT with no position information can still solve associative recall at any
    distance by content (the key match); the task cannot be solved from the last token alone."""
    t = Recall(noise=8, values=4, keys=4, pairs=2)
    x, y = t.batch(512, 30, torch.Generator().manual_seed(1))
    # the last token (the key) alone carries no information about the value
    by_key = {}
    for k, v in zip(x[:, -1].tolist(), y.tolist(), strict=True):
        by_key.setdefault(k, []).append(v)
    best = sum(max(vs.count(u) for u in set(vs)) for vs in by_key.values()) / len(y)
    assert best < 0.45  # chance 0.25 + sampling noise


def test_flop_counter_agrees_with_the_cost_engine():
    conv = nn.Conv2d(3, 16, 3, padding=1)
    want = layers.conv(3, 16, 3, padding=1, image_size=10).flops_forward_dense
    assert v4.forward_flops(conv, torch.randn(2, 3, 10, 10)) == want
    s = {"patch": 2, "d_model": 16, "layers": 2, "heads": 4}
    vit = v3._vit(12, s)
    counted = v4.forward_flops(vit, torch.randn(1, 1, 12, 12))
    head = 2 * 16 * 10  # the classifier Linear(d, 10) on the pooled token, not in the engine
    assert counted == v3.engine(16, 4, 2, 36, 1, 2)["flops"] + head


def test_cnn_interpolation_in_log_parameters():
    cnn = [{"params": 100, "acc": [0.5]}, {"params": 10_000, "acc": [0.9]}]
    assert c2.cnn_at(cnn, 1000, 0) == pytest.approx(0.7)  # halfway in log10 params
    assert c2.cnn_at(cnn, 50, 0) is None and c2.cnn_at(cnn, 20_000, 0) is None


def test_study_models_train_through_archlabs_trainer(tmp_path):
    """The study's fit is archlab.train.Trainer: a run directory with safetensors + JSON, the
    TrainConfig recorded, loadable by archlab.models.load; the same request twice is one run."""
    import json

    from archlab.models import load
    from archlab.study import training
    from archlab.study.context import StudyContext
    from archlab.study.pools import IMAGE, image_fit

    training.clear_memo()
    ctx = StudyContext("X", "tiny", [0], {}, show_progress=False, runs_dir=tmp_path, offline=True)
    a = image_fit(ctx, "cnn", 0, IMAGE["tiny"])
    assert a.run_dir is not None and (a.run_dir / "model.safetensors").is_file()
    cfg = json.loads((a.run_dir / "config.json").read_text())
    assert cfg["train"]["optimizer"] == "adamw" and cfg["step"] == IMAGE["tiny"]["steps"]
    assert image_fit(ctx, "cnn", 0, IMAGE["tiny"]) is a  # shared between claims
    training.clear_memo()
    b = image_fit(ctx, "cnn", 0, IMAGE["tiny"])  # a new process: loaded, not retrained
    assert b.reused and b.final["accuracy"] == pytest.approx(a.final["accuracy"])
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(load(a.run_dir).eval()(x), a.model.eval()(x), atol=1e-5)
