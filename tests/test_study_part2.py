"""archlab study, Part 2 (CNN vs ViT): every claim at the tiny profile, every verdict rule on
synthetic metrics for each outcome it can give, and one oracle per mechanism the claims measure."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from archlab.cost import layers
from archlab.models import create_model
from archlab.models.vit import mean_attention_distance
from archlab.study.claim import get_claim
from archlab.study.claims import c1_hierarchical_features as c1
from archlab.study.claims import c2_parameter_efficiency as c2
from archlab.study.claims import c3_translation_invariance as c3
from archlab.study.claims import c4_global_context as c4
from archlab.study.claims import v1_global_view as v1
from archlab.study.claims import v2_data_efficiency as v2
from archlab.study.claims import v3_quadratic_patches as v3
from archlab.study.claims import v4_parallel_processing as v4
from archlab.study.context import StudyContext
from archlab.study.imagetrain import image_run, run_sizes
from archlab.study.measure import rounded
from archlab.study.runner import strip_timing
from archlab.study.vision import (
    effective_rf,
    receptive_fields,
    uniform_attention_distance,
    window_mean_distance,
)

PART2 = ["C1", "C2", "C3", "C4", "V1", "V2", "V3", "V4"]


@pytest.fixture(scope="module")
def tiny() -> dict[str, dict]:
    torch.set_num_threads(1)
    out = {}
    for cid in PART2:
        claim = get_claim(cid)
        ctx = StudyContext(cid, "tiny", [0, 1, 2], dict(claim.sizes["tiny"]), show_progress=False)
        out[cid] = json.loads(json.dumps(rounded(claim.run(ctx))))  # as results.json stores it
    return out


@pytest.mark.parametrize("cid", PART2)
def test_claim_runs_at_tiny_size(tiny, cid):
    claim = get_claim(cid)
    m = tiny[cid]
    v = claim.verdict(m)
    assert v.status in ("supported", "not supported", "conditional") and v.reason
    assert claim.figure(m)[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(t.rows and all(len(r) == len(t.columns) for r in t.rows) for t in claim.tables(m))
    assert claim.part == 2 and claim.trains == (cid not in ("V3", "V4"))
    assert claim.timing_verdict == (cid in ("V2", "V3", "V4"))


def test_tiny_metrics_hold_their_invariants(tiny):
    assert all(
        r["conv_params"] == 1_792 for r in tiny["C2"]["conv_vs_dense"]
    )  # k²·C_in·C_out + C_out
    circ = tiny["C3"]["models"]["cnn-circular"]["circular"]["consistency"]
    assert all(c["mean"] == 1.0 for c in circ)  # exact symmetry, every seed
    assert tiny["C1"]["rf"] == [3, 8, 18]
    assert all(
        e["mean"] <= r for e, r in zip(tiny["C1"]["erf"]["trained"], tiny["C1"]["rf"], strict=True)
    )
    assert tiny["V3"]["memory_exponent"]["fused"] == pytest.approx(1.0, abs=0.05)
    assert tiny["V4"]["flops_ratio"] == pytest.approx(1.0, abs=0.35)


# ---------------------------------------------------------------------------- oracles


def test_receptive_field_recurrence_on_a_known_stack():
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3),
                        nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 3, dilation=2))  # fmt: skip
    # by hand: 3; pool -> 4 (jump 2); +2·2 = 8; +2·2 = 12 (jump 4); +2·2·4 = 28
    assert [r["rf"] for r in receptive_fields(net)] == [3, 8, 12, 28]
    assert [r["jump"] for r in receptive_fields(net)] == [1, 2, 4, 4]
    # no padding: unit 0's field starts at pixel 0, so its centre is (rf - 1) / 2
    assert [r["centre0"] for r in receptive_fields(net)] == [1, 3.5, 5.5, 13.5]


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
    # holding all of the gradient takes exactly the theoretical field (it fits in the image)
    assert [e["erf"] for e in effective_rf(cnn, torch.randn(4, 1, 24, 24), mass=1.0)] == [
        r["rf"] for r in rows
    ]
    # and the field is reached: the last layer's gradient spans its full theoretical width
    assert int(xs.max() - xs.min()) + 1 == rows[-1]["rf"]


def test_consistency_is_exact_for_the_circular_cnn_and_not_for_max_pooling():
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 12, 12), torch.randint(10, (64,))
    circ = create_model("cnn", image_size=12, channels=(8, 8), convs_per_stage=1, pool="none",
                        padding_mode="circular").eval()  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    assert c3.consistency(circ, x, y, 3, "circular", 0.0, gen)["consistency"] == 1.0
    pooled = create_model(
        "cnn", image_size=12, channels=(8, 8), convs_per_stage=1, pool="max"
    ).eval()
    assert c3.consistency(pooled, x, y, 3, "circular", 0.0, gen)["consistency"] < 1.0


def test_shift_moves_content_and_fills_the_border():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    z = c3.shift(x, 1, -1, "zero-fill", fill=-5.0)
    assert torch.equal(z[0, 0, 1:, :3], x[0, 0, :3, 1:])
    assert (z[0, 0, 0] == -5).all() and (z[0, 0, :, 3] == -5).all()
    assert torch.equal(c3.shift(c3.shift(x, 2, 3, "circular"), -2, -3, "circular"), x)
    offs = torch.tensor([[0, 0], [1, 0]])
    both = c3.shift_each(torch.cat([x, x]), offs, "circular", 0.0)
    assert torch.equal(both[0], x[0]) and torch.equal(both[1], torch.roll(x[0], 1, dims=-2))


def test_mean_attention_distance_references():
    p = 3  # 2×2 grid: each query is 0, p, p and p·√2 away from the four keys
    assert uniform_attention_distance(2, p) == pytest.approx(p * (2 + math.sqrt(2)) / 4)
    cfg = create_model("vit", image_size=12, patch_size=p, d_model=8, heads=2, layers=1,
                       pool="mean").config  # fmt: skip
    g = cfg.grid_size
    uniform = torch.full((2, 2, g * g, g * g), 1.0 / (g * g))  # (B, heads, N, N)
    mad = mean_attention_distance(uniform, cfg)
    assert torch.allclose(mad, torch.full((2,), uniform_attention_distance(g, p)), atol=1e-5)
    assert mean_attention_distance(torch.eye(g * g).expand(1, 2, -1, -1), cfg).abs().max() < 1e-6
    assert window_mean_distance(3) == pytest.approx((4 + 4 * math.sqrt(2)) / 9)
    assert window_mean_distance(1) == 0


def test_linear_probe_is_exact_on_separable_data_and_chance_on_noise():
    gen = torch.Generator().manual_seed(0)
    centers = 5 * torch.randn(3, 6, generator=gen)
    y = torch.randint(3, (300,), generator=gen)
    f = centers[y] + 0.1 * torch.randn(300, 6, generator=gen)
    assert c1.ridge_probe(f[:200], y[:200], f[200:], y[200:], 1e-3, 3) == 1.0
    noise = torch.randn(300, 6, generator=gen)
    assert c1.ridge_probe(noise[:200], y[:200], noise[200:], y[200:], 1e-3, 3) < 0.6


def test_two_marks_task_labels_and_distances_are_what_they_say():
    shapes = c4.mark_shapes(4, 3)
    assert len({tuple(s.flatten().tolist()) for s in shapes}) == 4
    x, same, d = c4.make_batch(200, [3, 9], shapes, 15, 0.0, torch.Generator().manual_seed(0))
    assert 0.3 < same.float().mean() < 0.7
    for i in range(200):
        on = torch.nonzero(x[i, 0].unfold(0, 3, 3).unfold(1, 3, 3).flatten(2).sum(-1))  # mark cells
        assert len(on) == 2
        (r1, c1_), (r2, c2_) = on.tolist()
        assert 3 * (abs(r2 - r1) + abs(c2_ - c1_)) == int(d[i])
        a, b = (x[i, 0, 3 * r : 3 * r + 3, 3 * c : 3 * c + 3] for r, c in on.tolist())
        assert torch.equal(a, b) == bool(same[i])


def test_flop_counter_agrees_with_the_cost_engine():
    conv = nn.Conv2d(3, 16, 3, padding=1)
    assert v4.forward_flops(conv, torch.randn(2, 3, 10, 10)) == layers.conv(
        3, 16, 3, padding=1, image_size=10).flops_forward_dense  # fmt: skip
    s = {"patch": 2, "d_model": 16, "layers": 2, "heads": 4}
    vit = v3._vit(12, s)
    counted = v4.forward_flops(vit, torch.randn(1, 1, 12, 12))
    head = 2 * 16 * 10  # the classifier Linear(d, 10) on the pooled token, not in the engine
    assert counted == v3.engine(16, 4, 2, 36, 1, 2)["flops"] + head


def test_same_seeds_same_metrics_except_timing(monkeypatch):
    from archlab.study import imagetrain

    claim, runs = get_claim("C2"), []
    for _ in range(2):
        monkeypatch.setattr(imagetrain, "_MEMO", {})  # train again from scratch
        ctx = StudyContext("C2", "tiny", [0, 1, 2], dict(claim.sizes["tiny"]), show_progress=False)
        runs.append(strip_timing(rounded(claim.run(ctx))))
    assert runs[0] == runs[1]


def test_image_runs_are_shared_between_claims():
    s = run_sizes("tiny")
    a = image_run("cnn", 0, s)
    assert image_run("cnn", 0, {**s, "shifts": [1]}) is a  # a claim's own keys do not matter
    assert image_run("cnn", 1, s) is not a


# ---------------------------------------------------------------------------- verdict rules


def ms(mean: float, std: float = 0.01) -> dict:
    return {"mean": mean, "std": std, "min": mean - std, "max": mean + std, "n": 3}


def _c1(trained, init):
    return {"probe": {"trained": [ms(a) for a in trained], "init": [ms(a) for a in init]},
            "probe_pixels": 0.7, "rf": [3, 8, 18], "erf": {"trained": [ms(3), ms(7), ms(12)]},
            "erf_mass": 0.9, "depth": 3}  # fmt: skip


def test_c1_verdicts():
    assert c1.verdict(_c1([0.7, 0.8, 0.85], [0.7, 0.72, 0.7])).status == "supported"
    assert c1.verdict(_c1([0.8, 0.8, 0.8], [0.7, 0.7, 0.7])).status == "not supported"
    assert c1.verdict(_c1([0.7, 0.75, 0.8], [0.7, 0.76, 0.79])).status == "conditional"


def _c2(accs: dict, conv=(1792, 1792)):
    pts = [{"arch": a, "scale": s, "params": p, "acc": ms(acc)} for a, rows in accs.items()
           for s, p, acc in rows]  # fmt: skip
    return {"points": pts, "engine_layer": {"k": 3},
            "conv_vs_dense": [{"image_size": 8, "conv_params": conv[0], "dense_params": 10},
                              {"image_size": 32, "conv_params": conv[1], "dense_params": 1000}]}  # fmt: skip


def test_c2_verdicts():
    good = {
        "cnn": [(0.5, 1000, 0.8), (1, 4000, 0.85)],
        "vit": [(1, 5000, 0.6)],
        "mlp": [(1, 4000, 0.7)],
    }
    assert c2.verdict(_c2(good)).status == "supported"
    bad = {"cnn": [(1, 4000, 0.6)], "vit": [(1, 4000, 0.7)], "mlp": [(1, 1000, 0.8)]}
    assert c2.verdict(_c2(bad)).status == "not supported"
    mixed = {"cnn": [(0.5, 1000, 0.8), (1, 4000, 0.85)], "vit": [(1, 5000, 0.6)],
             "mlp": [(1, 500, 0.8)]}  # fmt: skip
    v = c2.verdict(_c2(mixed))
    assert v.status == "conditional" and "mlp 500" in v.condition
    assert c2.verdict(_c2(good, conv=(1792, 1800))).status == "not supported"


def _c3(pooled: float, circ_roll: float):
    def model(roll: float, zero: float):
        return {
            "circular": {"consistency": [ms(roll)] * 2},
            "zero-fill": {"consistency": [ms(zero)] * 2},
        }

    return {"shifts": [1, 4], "models": {"cnn": model(pooled, pooled),
            "cnn-circular": model(circ_roll, 0.8), "vit": model(0.5, 0.5)}}  # fmt: skip


def test_c3_verdicts():
    assert c3.verdict(_c3(0.995, 1.0)).status == "supported"
    assert c3.verdict(_c3(0.7, 1.0)).status == "conditional"
    assert c3.verdict(_c3(0.7, 0.9)).status == "not supported"


def _c4(shallow, deep, vit):
    return {"rf": {"shallow CNN": 8, "deep CNN": 18}, "span": [6, 9, 12], "steps": 1, "batch": 1,
            "acc": {"shallow CNN": [ms(a) for a in shallow], "deep CNN": [ms(a) for a in deep],
                    "ViT": [ms(a) for a in vit]}}  # fmt: skip


def test_c4_verdicts():
    assert c4.verdict(_c4([0.9, 0.5, 0.5], [0.9, 0.6, 0.5], [1, 1, 1])).status == "supported"
    assert c4.verdict(_c4([0.9, 0.5, 0.5], [0.9, 0.9, 0.9], [1, 1, 1])).status == "conditional"
    assert c4.verdict(_c4([0.9, 0.9, 0.9], [0.9, 0.9, 0.9], [1, 1, 1])).status == "not supported"
    v = c4.verdict(_c4([0.6, 0.5, 0.5], [0.6, 0.5, 0.5], [0.6, 0.55, 0.5]))
    assert v.status == "conditional" and "neither" in v.condition
    far_only = {**_c4([0.5] * 3, [0.5] * 3, [1] * 3), "span": [9, 12, 15]}
    assert c4.verdict(far_only).status == "supported"  # no near distance needed to judge
    near_only = {**_c4([0.9] * 3, [0.9] * 3, [1] * 3), "span": [4, 6, 8]}
    assert c4.verdict(near_only).status == "not supported"


def _v1(trained: list[list[float]], init: list[float], cnn=(1.0, 3.0)):
    return {"distance": [[ms(h) for h in layer] for layer in trained],
            "distance_init": [ms(i) for i in init], "uniform": 7.0, "cnn_rf": [3, 8],
            "cnn_rf_mean_distance": list(cnn)}  # fmt: skip


def test_v1_verdicts():
    assert v1.verdict(_v1([[2, 6], [4, 7]], [7, 7])).status == "supported"
    unmoved = v1.verdict(_v1([[7.0, 7.1], [7.0, 7.05]], [7.02, 7.03]))
    assert unmoved.status == "conditional" and "initialization" in unmoved.condition
    assert v1.verdict(_v1([[0.5, 0.8], [1, 2]], [7, 7])).status == "not supported"
    partial = v1.verdict(_v1([[0.5, 2], [1, 2]], [7, 7]))
    assert partial.status == "conditional" and "layers [1]" in partial.condition


def _v2(gaps: list[float], slope: float, steps_gaps=(0.2, 0.05), steps_slope=-0.15):
    """Same-time gaps/slope decide; the same-steps ones are the opposite story to prove it."""
    return {"gap": [ms(g) for g in steps_gaps], "gap_slope_per_decade": ms(steps_slope),
            "train_images": [500, 4000], "steps": 10, "batch": 8,
            "timing": {"same_time": {"gap": [ms(g) for g in gaps], "gap_slope_per_decade": ms(slope),
                                     "vit_steps": [ms(3.0), ms(2.0)]}}}  # fmt: skip


def test_v2_verdicts():
    sup = v2.verdict(_v2([0.2, 0.05], -0.15, steps_gaps=(0.1, 0.2), steps_slope=0.1))
    assert sup.status == "supported" and "+0.100 → +0.200" in sup.reason  # same-steps trend stated
    assert v2.verdict(_v2([-0.01, 0.0], 0.01)).status == "not supported"
    cond = v2.verdict(_v2([0.1, 0.2], 0.1))
    assert cond.status == "conditional" and "same training time" in cond.condition
    # a shrinking gap whose trend is within its spread over seeds is not evidence: conditional
    noisy = _v2([0.2, 0.15], -0.02)
    noisy["timing"]["same_time"]["gap_slope_per_decade"] = {"mean": -0.02, "std": 0.03}
    assert v2.verdict(noisy).status == "conditional"


def test_v2_budget_steps():
    assert v2.budget_steps(300, 1.0, 4.7) == 64  # 300 × 1/4.7 = 63.8
    assert v2.budget_steps(300, 2.0, 1.0) == 600
    assert v2.budget_steps(300, 0.001, 10.0) == 1  # never zero steps


def test_v2_same_time_runs_fit_the_cnn_budget(tiny):
    """The budgeted ViT steps follow from the same-steps runs' seconds, and every time-dependent
    number sits under "timing" (so strip_timing leaves only the deterministic same-steps table)."""
    m = tiny["V2"]
    t = m["timing"]["same_time"]
    assert len(t["vit_steps"]) == len(t["gap"]) == len(m["train_images"]) == 2
    assert all(k["min"] >= 1 for k in t["vit_steps"])
    for i, n in enumerate(m["train_images"]):
        assert t["vit_epochs"][i]["mean"] == pytest.approx(
            t["vit_steps"][i]["mean"] * m["batch"] / n, rel=1e-4
        )
    assert set(strip_timing(m)) == {"train_images", "steps", "batch", "epochs", "acc", "gap",
                                    "gap_slope_per_decade", "params", "data"}  # fmt: skip


def _v3(below, above, mem=(2.0, 1.0)):
    return {"timing": {"exponent_below": below and ms(below), "exponent_above": above and ms(above)},
            "memory_exponent": {"materialized": mem[0], "fused": mem[1]}, "n_star": 192,
            "memory_exponent_above": None,
            "d_model": 32, "patches": [16, 1024]}  # fmt: skip


def test_v3_verdicts():
    assert v3.verdict(_v3(1.8, 1.9)).status == "supported"
    v = v3.verdict(_v3(0.4, 1.8))
    assert v.status == "conditional" and "192" in v.condition
    assert v3.verdict(_v3(0.4, 1.1)).status == "not supported"
    assert v3.verdict(_v3(None, 1.9)).status == "not supported"


def _v4(ratio: float):
    return {"timing": {"training": {"vit_over_cnn_images_per_s": ms(ratio)},
                       "inference": {"vit_over_cnn_images_per_s": ms(ratio)}},
            "cnn_flops": 100, "vit_flops": 101, "device": "cpu", "threads": 1, "batch": 8}  # fmt: skip


def test_v4_verdicts():
    assert v4.verdict(_v4(1.5)).status == "supported"
    slower = v4.verdict(_v4(0.3))
    assert slower.status == "conditional" and "slower" in slower.condition
    same = v4.verdict(_v4(1.0))
    assert same.status == "conditional" and "no faster" in same.condition
