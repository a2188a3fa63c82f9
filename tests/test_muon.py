"""Muon: the Newton-Schulz iteration against the SVD, the update against torch.optim.Muon, the
AdamW groups against torch.optim.AdamW, and which parameters get which."""

from __future__ import annotations

import torch
from torch import nn

from archlab.models import create_model
from archlab.train.muon import Muon, muon_param_groups, orthogonalize


def test_orthogonalize_approximates_u_vt_of_the_svd():
    g = torch.Generator().manual_seed(0)
    # A random square matrix has singular values near 0, which the quintic lifts more slowly:
    # five steps for the rectangular ones (smallest singular value ~0.3 of the largest), eight.
    for shape, steps in (((64, 32), 5), ((32, 64), 5), ((96, 96), 8)):
        m = torch.randn(shape, generator=g, dtype=torch.float64)
        o = orthogonalize(m, steps=steps, dtype=torch.float64)
        u, _, vh = torch.linalg.svd(m, full_matrices=False)
        s = torch.linalg.svdvals(o)
        # The quintic lands every singular value in ~[0.7, 1.2] (Jordan et al. 2024).
        assert 0.6 < s.min() and s.max() < 1.25, (shape, s.min(), s.max())
        # ... with G's singular vectors: O ~ U diag(s') V^T, far from 0 or from G itself.
        uv = u @ vh
        cos = (o * uv).sum() / (o.norm() * uv.norm())
        assert cos > 0.97, (shape, cos)
        assert torch.allclose(orthogonalize(m.T, steps, torch.float64), o.T, atol=1e-12)


def test_muon_update_matches_torch_muon():
    """bf16 iteration (torch's choice) and torch's match_rms_adamw scaling: the same steps."""
    torch.manual_seed(0)
    w0 = [torch.randn(48, 24), torch.randn(24, 72)]
    ours = [nn.Parameter(w.clone()) for w in w0]
    ref = [nn.Parameter(w.clone()) for w in w0]
    a = Muon(
        [{"params": ours, "muon": True, "weight_decay": 0.1}], lr=0.02, ns_dtype=torch.bfloat16
    )
    b = torch.optim.Muon(ref, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    for _ in range(4):
        grads = [torch.randn_like(w) for w in w0]
        for p, q, gr in zip(ours, ref, grads, strict=True):
            p.grad, q.grad = gr.clone(), gr.clone()
        a.step()
        b.step()
    for p, q, w in zip(ours, ref, w0, strict=True):
        d_ours, d_ref = p.detach() - w, q.detach() - w
        assert d_ref.norm() > 0.1  # the steps moved the weights
        # Same math, bf16 rounding in a different order: deltas agree to ~1%.
        assert (d_ours - d_ref).norm() / d_ref.norm() < 0.02


def test_adamw_groups_equal_torch_adamw():
    torch.manual_seed(1)
    w0 = [torch.randn(10, 6), torch.randn(6)]
    ours = [nn.Parameter(w.clone()) for w in w0]
    ref = [nn.Parameter(w.clone()) for w in w0]
    a = Muon([{"params": ours, "weight_decay": 0.05}], lr=3e-3, betas=(0.9, 0.95), eps=1e-8)
    b = torch.optim.AdamW(ref, lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.05, fused=True)
    for _ in range(5):
        for p, q in zip(ours, ref, strict=True):
            gr = torch.randn_like(p)
            p.grad, q.grad = gr.clone(), gr.clone()
        a.step()
        b.step()
    for p, q in zip(ours, ref, strict=True):
        assert torch.equal(p, q)


def test_vit_hidden_matrices_get_muon_the_rest_adamw():
    model = create_model("vit-fmnist")
    groups = muon_param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for g in groups if g["muon"] for p in g["params"]}
    expected = {
        f"blocks.{i}.{m}.weight"
        for i in range(4)
        for m in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
    }
    assert muon == expected  # not the patch projection, the head, norms, biases or tables
    every = [id(p) for g in groups for p in g["params"]]
    assert sorted(every) == sorted(id(p) for p in model.parameters())  # each exactly once
    assert all(g["weight_decay"] == 0.05 for g in groups if g["muon"])
    # Muon fails loudly on what it cannot orthogonalize.
    try:
        Muon([{"params": [nn.Parameter(torch.zeros(3))], "muon": True}], lr=1.0)
    except ValueError:
        pass
    else:
        raise AssertionError("a 1-D Muon parameter was accepted")


def test_cnn_hidden_kernels_get_muon_first_conv_and_head_adamw():
    model = create_model("cnn-fmnist")
    groups = muon_param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for g in groups if g["muon"] for p in g["params"]}
    # The stem conv (1 -> 16) is the input map and the head the output map: AdamW.
    assert muon == {f"features.{i}.0.weight" for i in (1, 3, 4, 6, 7, 9, 10)}
    # Depthwise kernels are not matrices over channels: AdamW, whatever their place.
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 16, 1), nn.Linear(16, 4)
    )
    groups = muon_param_groups(net, 0.05)
    assert [p for g in groups if g["muon"] for p in g["params"]] == [net[2].weight]


def test_conv_kernel_update_is_its_flattened_matrix_update():
    """A kernel (out, in, kh, kw), even in channels_last, moves exactly as the matrix
    (out, in * kh * kw) holding the same numbers: one Muon, whatever the weight's shape."""
    torch.manual_seed(2)
    w0 = torch.randn(16, 8, 3, 3)
    kernel = nn.Parameter(w0.clone().to(memory_format=torch.channels_last))
    matrix = nn.Parameter(w0.reshape(16, 72).clone())
    opts = [
        Muon([{"params": [q], "muon": True, "weight_decay": 0.1}], lr=0.01)
        for q in (kernel, matrix)
    ]
    for _ in range(3):
        gr = torch.randn(16, 8, 3, 3)
        kernel.grad = gr.clone().to(memory_format=torch.channels_last)
        matrix.grad = gr.reshape(16, 72).clone()
        for o in opts:
            o.step()
    assert (matrix.detach() - w0.reshape(16, 72)).norm() > 0.1
    assert torch.equal(kernel.detach().reshape(16, 72), matrix.detach())


def test_gram_form_equals_the_direct_iteration(monkeypatch):
    """Wide fp32 matrices (m < n/2) take the Gram form. In fp64 it equals the direct quintic to
    rounding; in fp32 its error against that fp64 result is within 2x of the direct fp32
    iteration's own (1e-6 of the scale; ~5e-5 for a gradient of rank 3, whose zero singular
    values the Gram matrix squares and both forms lift from round-off)."""
    from archlab.train import muon

    a, b, c = muon.NS_COEFFICIENTS

    def direct(x):
        x = x / x.norm()
        for _ in range(5):
            gram = x @ x.mT
            x = a * x + (b * gram + c * gram @ gram) @ x
        return x

    g = torch.Generator().manual_seed(3)
    low_rank = torch.randn(64, 3, generator=g) @ torch.randn(3, 576, generator=g)
    for x in (torch.randn(128, 1152, generator=g), torch.randn(16, 144, generator=g), low_rank):
        ref = direct(x.double())
        scale = ref.abs().max()
        got64 = orthogonalize(x, 5, torch.float64)
        assert (got64 - ref).abs().max() < 1e-12 * scale, x.shape
        got32 = orthogonalize(x, 5, torch.float32)
        assert got32.dtype == torch.float32
        err_gram = (got32.double() - ref).abs().max()
        err_direct = (direct(x.float()).double() - ref).abs().max()
        assert err_gram < 2 * err_direct + 1e-7 * scale, (x.shape, err_gram, err_direct)
        assert torch.equal(orthogonalize(x.T, 5, torch.float32), got32.T)  # tall: transposed
    # The switch: wide fp32 takes the Gram form, square or bf16 the direct one.
    calls, real = [], muon._gram_iteration
    monkeypatch.setattr(
        muon, "_gram_iteration", lambda x, steps: calls.append(tuple(x.shape)) or real(x, steps)
    )
    orthogonalize(torch.randn(16, 144), 5, torch.float32)
    orthogonalize(torch.randn(96, 96), 5, torch.float32)
    orthogonalize(torch.randn(16, 144), 5, torch.bfloat16)
    assert calls == [(16, 144)]
