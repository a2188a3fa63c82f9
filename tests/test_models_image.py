"""Oracles for the image classifiers (cnn, resnet, vit, mlp): shapes and gradients for every
registered image model, config round-trips, ViT token geometry and attention weights, exact
circular-shift invariance of a stride-1 circular CNN (and its failure with pooling or striding), and
parameter counts against hand-derived formulas."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from archlab.models import create_model, get_spec, list_models, make_config
from archlab.models.vit import ViTConfig, mean_attention_distance

TINY = {
    "cnn": dict(image_size=12, channels=(4, 8), convs_per_stage=2),
    "resnet": dict(image_size=12, widths=(4, 8), blocks=(1, 2)),
    "vit": dict(image_size=12, patch_size=4, d_model=16, layers=2, heads=2),
    "mlp": dict(image_size=12, hidden=(16, 8)),
}
IMAGE_NAMES = list_models("image")


def build(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, **{**TINY.get(name, {}), **overrides})


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def images(cfg, batch: int = 2, seed: int = 1) -> torch.Tensor:
    shape = (batch, cfg.in_channels, cfg.image_size, cfg.image_size)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_every_image_family_is_registered():
    assert {"cnn", "resnet", "vit", "mlp"} <= set(IMAGE_NAMES)


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_forward_backward_finite(name):
    model = build(name).train()
    cfg = model.config
    logits = model(images(cfg))
    assert logits.shape == (2, cfg.num_classes) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_config_json_round_trip_rebuilds_identical_model(name):
    cfg = make_config(name, **TINY.get(name, {}))
    d = json.loads(json.dumps(dataclasses.asdict(cfg)))
    cfg2 = type(cfg)(**d)
    assert cfg2 == cfg  # lists from JSON come back as the tuples the config holds
    build_fn = get_spec(name).build
    torch.manual_seed(3)
    a = build_fn(cfg).state_dict()
    torch.manual_seed(3)
    b = build_fn(cfg2).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- ViT geometry and attention -----------------------------------------------------------------


@pytest.mark.parametrize(
    "size, patch, pool, tokens", [(32, 4, "cls", 65), (28, 7, "cls", 17), (32, 4, "mean", 64)]
)
def test_vit_patch_count_and_positions(size, patch, pool, tokens):
    model = build("vit", image_size=size, patch_size=patch, pool=pool, in_channels=3)
    assert model.config.num_patches == (size // patch) ** 2
    assert model.pos_emb.shape == (1, tokens, 16)
    assert (model.cls_token is not None) == (pool == "cls")
    logits, attn = model.eval()(images(model.config), return_attn=True)
    assert logits.shape == (2, 10) and len(attn) == 2
    assert attn[0].shape == (2, 2, tokens, tokens)  # (B, heads, N_tokens, N_tokens)


def test_vit_invalid_patch_size_names_the_field():
    with pytest.raises(ValueError, match="patch_size"):
        create_model("vit", image_size=28, patch_size=5)


@pytest.mark.parametrize("lsa", [False, True])
def test_vit_explicit_attention_path_equals_sdpa_path(lsa):
    model = build("vit", lsa=lsa).eval()
    if lsa:  # away from the init, so a lost temperature would show
        with torch.no_grad():
            for block in model.blocks:
                block.attn.scale.mul_(torch.tensor([0.5, 3.0]))
    x = images(model.config)
    with torch.no_grad():
        fast = model(x)
        slow, attn = model(x, return_attn=True)
    torch.testing.assert_close(slow, fast, atol=1e-5, rtol=0)
    for a in attn:
        torch.testing.assert_close(a.sum(-1), torch.ones_like(a.sum(-1)), atol=1e-5, rtol=0)
        diagonal = a.diagonal(dim1=-2, dim2=-1)  # (B, heads, N_tokens): each token on itself
        assert (diagonal == 0).all() == lsa and (diagonal > 0).any() != lsa


def test_vit_lsa_temperature_is_learned_per_head_and_not_decayed():
    """LSA (Lee et al. 2021 §3.3): one learned scale per head, initialized to 1/sqrt(head size)."""
    from archlab.train.optim import param_groups

    model = build("vit", lsa=True)  # d_model 16, 2 heads of 8
    plain = build("vit")
    assert n_params(model) == n_params(plain) + 2 * len(model.blocks)
    scale = model.blocks[0].attn.scale
    torch.testing.assert_close(scale.detach(), torch.full((2,), 8**-0.5))
    model(images(model.config)).square().sum().backward()
    assert scale.grad is not None and (scale.grad != 0).all()
    decayed = {
        id(p) for g in param_groups(model, 0.1) if g["weight_decay"] > 0 for p in g["params"]
    }
    assert id(scale) not in decayed


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_patch_dropout_is_a_random_subset_in_training_only(pool):
    """PatchDropout (Liu et al. 2023): in training, the forward equals the same ViT run on exactly
    the tokens kept (class token + a subset of patches with their own positions); in eval, all."""
    torch.manual_seed(0)
    model = build("vit", pool=pool, patch_dropout=0.5)  # 9 patches -> keeps round(4.5) = 4
    ref = build("vit", pool=pool)
    ref.load_state_dict(model.state_dict())
    x = images(model.config, batch=3)
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(x), ref.eval()(x), atol=0, rtol=0)
        model.train()
        seen: list[torch.Tensor] = []
        model.blocks[0].register_forward_hook(lambda m, a, out: seen.append(a[0]))
        torch.manual_seed(5)
        got = model(x)
    off = 1 if pool == "cls" else 0
    tokens = seen[0]  # (B, off + k, d): what the first block was given
    assert model.kept_patches() == 4 and tokens.shape == (3, off + 4, 16)
    # find each kept token in the full token sequence: a subset, no repeats
    full = ref.tokens(x)[:, off:]  # (B, 9, d) patch tokens with their positions
    for b in range(3):
        match = (tokens[b, off:, None, :] - full[b, None, :, :]).abs().amax(-1) < 1e-6  # (4, 9)
        assert (match.sum(1) == 1).all() and match.any(0).sum() == 4
    if pool == "cls":
        cls = (ref.cls_token[0, 0] + ref.pos_emb[0, 0]).expand(3, -1)  # (B, d)
        torch.testing.assert_close(tokens[:, 0], cls)
    # the rest of the network is the plain ViT on those tokens
    h = tokens
    for block in ref.blocks:
        h, _ = block(h)
    h = ref.ln_f(h)
    want = ref.head(h[:, 0] if pool == "cls" else h.mean(dim=1))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    # two calls draw different subsets; the draw follows torch's seed (resume replays it)
    torch.manual_seed(5)
    with torch.no_grad():
        again = model(x)
        other = model(x)
    torch.testing.assert_close(again, got, atol=0, rtol=0)
    assert not torch.equal(other, got)


def test_vit_patch_dropout_rejects_a_window_and_out_of_range():
    with pytest.raises(ValueError, match="patch_dropout"):
        create_model("vit", image_size=12, patch_size=4, patch_dropout=1.0)
    with pytest.raises(ValueError, match="attn_window"):
        create_model("vit", image_size=12, patch_size=4, patch_dropout=0.25, attn_window=1)


def test_mean_attention_distance_extremes():
    cfg = ViTConfig(image_size=12, patch_size=4, d_model=16, heads=2, layers=1)  # 3x3 grid, cls
    N = cfg.num_patches + 1
    eye = torch.eye(N).expand(1, 2, N, N)
    assert mean_attention_distance(eye, cfg).tolist() == [0.0, 0.0]
    uniform = torch.full((1, 2, N, N), 1.0 / N)  # the cls column is dropped and rows renormalized
    cells = list(itertools.product(range(3), range(3)))
    mean_pair = sum(4 * math.dist(a, b) for a in cells for b in cells) / len(cells) ** 2
    torch.testing.assert_close(
        mean_attention_distance(uniform, cfg), torch.full((2,), mean_pair), atol=1e-5, rtol=0
    )


# ---- translation: circular-shift invariance ------------------------------------------------------


def randomized_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm non-trivial eval statistics and affine parameters (seeded)."""
    g = torch.Generator().manual_seed(5)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def max_shift_change(model: torch.nn.Module, shifts) -> float:
    x = images(model.config, batch=3, seed=2)
    with torch.no_grad():
        ref = model(x)
        return max((model(torch.roll(x, s, dims=(2, 3))) - ref).abs().max().item() for s in shifts)


SHIFTS = [(1, 0), (0, 1), (3, 5), (-2, 7), (11, 11)]


def test_stride1_circular_gap_cnn_is_exactly_shift_invariant():
    model = randomized_bn(build("cnn", pool="none", padding_mode="circular"))
    assert max_shift_change(model, SHIFTS) < 1e-5


@pytest.mark.parametrize("pool", ["max", "avg", "stride"])
def test_downsampling_cnn_is_not_shift_invariant(pool):
    # Same circular padding, so only the downsampling can break the symmetry.
    model = randomized_bn(build("cnn", pool=pool, padding_mode="circular"))
    assert max_shift_change(model, [(1, 0), (0, 1)]) > 1e-3
    # ... while shifts by a multiple of the total stride (2 here) still commute with it exactly.
    assert max_shift_change(model, [(2, 0), (0, 4), (6, -2)]) < 1e-5


def test_zero_padded_cnn_is_not_shift_invariant():
    model = randomized_bn(build("cnn", pool="none", padding_mode="zeros"))
    assert max_shift_change(model, [(1, 0)]) > 1e-3


# ---- parameter counts ---------------------------------------------------------------------------


def test_cnn_param_count():
    # Bias-free k x k convs, BatchNorm (weight + bias) per conv, linear head.
    model = build("cnn", in_channels=3, channels=(4, 8, 16), convs_per_stage=2, kernel_size=5)
    convs = [(3, 4), (4, 4), (4, 8), (8, 8), (8, 16), (16, 16)]
    expected = sum(25 * a * b + 2 * b for a, b in convs) + 16 * 10 + 10
    assert n_params(model) == expected
    # 16-32-64-128: 3x3 convs 1-16-16, 16-32-32, 32-64-64, 64-128-128 + BN, head 128 -> 10
    stages = [(1, 16), (16, 16), (16, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
    assert n_params(create_model("cnn-fmnist")) == sum(9 * a * b + 2 * b for a, b in stages) + 1290


def test_resnet_param_count():
    # stem 3x3; per block two 3x3 convs + 2 BNs (+ 1x1 shortcut when shape changes); final BN; head
    model = build("resnet", in_channels=3, widths=(4, 8), blocks=(1, 2))
    stem = 9 * 3 * 4
    b1 = 2 * 4 + 9 * 4 * 4 + 2 * 4 + 9 * 4 * 4  # 4 -> 4, identity shortcut
    b2 = 2 * 4 + 9 * 4 * 8 + 2 * 8 + 9 * 8 * 8 + 4 * 8  # 4 -> 8, stride 2, 1x1 shortcut
    b3 = 2 * 8 + 9 * 8 * 8 + 2 * 8 + 9 * 8 * 8
    assert n_params(model) == stem + b1 + b2 + b3 + 2 * 8 + 8 * 10 + 10


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_param_count(pool):
    C, p, d, L, d_ff, K, N = 3, 4, 16, 2, 64, 10, 9  # 12 px / patch 4 -> 9 patches
    model = build("vit", in_channels=C, pool=pool)
    block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * d_ff + d_ff) + (d_ff * d + d)
    tokens = N + (1 if pool == "cls" else 0)
    embed = C * p * p * d + d + (d if pool == "cls" else 0) + tokens * d
    assert n_params(model) == embed + L * block + 2 * d + d * K + K
    spt = build("vit", in_channels=C, pool=pool, tokenizer="spt")  # LN(5Cp^2) + Linear(5Cp^2, d)
    D = 5 * C * p * p
    assert n_params(spt) == n_params(model) - (C * p * p * d + d) + 2 * D + D * d + d
    # conv stem (Xiao et al. 2021), patch 4 = two 3x3 stride-2 conv-BN-ReLU (C -> d/2 -> d, no
    # conv bias), then a 1x1 conv d -> d with bias
    conv = build("vit", in_channels=C, pool=pool, tokenizer="conv")
    stem = 9 * C * (d // 2) + 2 * (d // 2) + 9 * (d // 2) * d + 2 * d + d * d + d
    assert n_params(conv) == n_params(model) - (C * p * p * d + d) + stem


@pytest.mark.parametrize(
    ("size", "patch", "strides"),
    [(12, 4, [2, 2, 1]), (28, 7, [7, 1]), (24, 6, [2, 3, 1]), (8, 1, [1])],
)
def test_vit_conv_stem_keeps_the_patch_grid(size, patch, strides):
    """The conv stem downsamples by exactly the patch size (3x3 stride 2 per factor 2, the odd
    rest as one r x r stride-r conv, a 1x1 last), so tokens and positions match the patchify
    ViT's; a token's receptive field overlaps its neighbours' (kernel 3 > stride 2)."""
    kw = dict(image_size=size, patch_size=patch, d_model=16, heads=2, in_channels=2)
    conv = build("vit", tokenizer="conv", **kw)
    convs = [m for m in conv.patch_embed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == strides
    x = images(conv.config, batch=3)  # (3, 2, size, size)
    g = size // patch
    assert conv.patch_embed(x).shape == (3, 16, g, g)
    assert conv.pos_emb.shape == build("vit", **kw).pos_emb.shape
    assert conv(x).shape == (3, conv.config.num_classes)


def test_spt_tokens_equal_an_explicit_loop():
    """Shifted Patch Tokenization (Lee et al. 2021), before its LayerNorm, against a pixel loop:
    token (i, j) holds, for the image and its 4 diagonal half-patch shifts (zero outside), the
    p x p block at patch (i, j), flattened channel-major."""
    cfg = make_config("vit", image_size=8, patch_size=4, in_channels=2, d_model=8, heads=2,
                      tokenizer="spt")  # fmt: skip
    m = create_model("vit", **dataclasses.asdict(cfg))
    x = images(cfg, batch=2)  # (2, 2, 8, 8)
    got = m.patch_embed.patches(m.patch_embed.shifted(x))  # (B, N, 5Cp^2)
    p, s, g, C = 4, 2, 2, 2
    shifts = [(0, 0), (-s, -s), (-s, s), (s, -s), (s, s)]
    want = torch.zeros(2, g * g, 5 * C * p * p)
    for b, (i, j), (k, (dy, dx)), c in itertools.product(
        range(2), itertools.product(range(g), range(g)), enumerate(shifts), range(C)
    ):
        for y, xx in itertools.product(range(p), range(p)):
            sy, sx = i * p + y - dy, j * p + xx - dx  # the shifted copy reads x(y - dy, x - dx)
            v = x[b, c, sy, sx] if 0 <= sy < 8 and 0 <= sx < 8 else 0.0
            want[b, i * g + j, ((k * C + c) * p + y) * p + xx] = v
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert m(x).shape == (2, 10)


def test_mlp_param_count():
    model = build("mlp", in_channels=3, hidden=(16, 8))
    assert n_params(model) == (3 * 144 * 16 + 16) + (16 * 8 + 8) + (8 * 10 + 10)
    assert n_params(build("mlp", hidden=())) == 144 * 10 + 10  # logistic regression


@pytest.mark.parametrize(
    "name, bad, field",
    [
        ("cnn", dict(kernel_size=4), "kernel_size"),
        ("cnn", dict(pool="fractional"), "pool"),
        ("cnn", dict(padding_mode="mirror"), "padding_mode"),
        ("cnn", dict(image_size=2, channels=(4, 8, 16)), "channels"),
        ("resnet", dict(widths=(4, 8), blocks=(1,)), "blocks"),
        ("vit", dict(d_model=16, heads=3), "heads"),
        ("vit", dict(pool="max"), "pool"),
        ("mlp", dict(hidden=(0,)), "hidden"),
        ("mlp", dict(num_classes=0), "num_classes"),
    ],
)
def test_bad_config_names_the_field(name, bad, field):
    with pytest.raises(ValueError, match=field):
        create_model(name, **bad)


# ---- precision and devices ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cnn", "resnet", "vit", "mlp"])
def test_bf16_autocast_matches_fp32(name):
    model = build(name).eval()
    x = images(model.config)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16
    # bf16 keeps 8 significant bits (relative rounding 2^-8 ≈ 0.4% per op); measured worst case
    # here is ~0.8% of the logit scale, so allow 2.5% of it (garbage would be ~100%).
    assert (low.float() - ref).abs().max() <= 0.025 * ref.abs().max()


@pytest.mark.gpu
@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_image_model_on_cuda_matches_cpu(name):
    model = build(name).eval()
    x = images(model.config)
    with torch.no_grad():
        ref = model(x)
        out = model.cuda()(x.cuda())
    # cuDNN may use TF32 convolutions (10-bit mantissa) by default: compare loosely.
    torch.testing.assert_close(out.cpu(), ref, atol=1e-2, rtol=1e-2)
