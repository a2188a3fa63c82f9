"""linear_cross_entropy (the fused, chunked decoder + loss) against the unfused expression."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.models import create_model, layers
from archlab.models.layers import linear_cross_entropy


def _grads(fn, *xs):
    for x in xs:
        x.grad = None
    loss = fn()
    loss.backward()
    return loss.detach(), [x.grad.clone() for x in xs]


@pytest.mark.parametrize("chunk_elems", [1, 37 * 5, 1 << 22])  # 1 row/chunk, ragged, one chunk
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("vocab_block", [1024, 5])  # 5: 37 words = seven blocks and a ragged one
def test_value_and_gradients_equal_unfused(chunk_elems, bias, vocab_block, monkeypatch):
    monkeypatch.setattr(layers, "_VOCAB_BLOCK", vocab_block)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(23, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(37, 8, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(37, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    t = torch.randint(37, (23,), generator=g)
    t[[3, 11]] = -100  # ignored targets: excluded from the mean, zero gradient
    xs = [h, w] + ([b] if bias else [])
    ref, gref = _grads(lambda: F.cross_entropy(F.linear(h, w, b), t), *xs)
    got, ggot = _grads(lambda: linear_cross_entropy(h, w, b, t, chunk_elems=chunk_elems), *xs)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    for a, r in zip(ggot, gref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
    assert ggot[0][[3, 11]].abs().max() == 0


def test_scaled_upstream_gradient():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(9, 4, generator=g, requires_grad=True)
    w = torch.randn(11, 4, generator=g, requires_grad=True)
    t = torch.randint(11, (9,), generator=g)
    (3.0 * linear_cross_entropy(h, w, None, t, chunk_elems=22)).backward()
    gh = h.grad.clone()
    h.grad = None
    (3.0 * F.cross_entropy(h @ w.t(), t)).backward()
    torch.testing.assert_close(gh, h.grad)


def test_rnn_lm_targets_path_equals_logits_path_under_bf16():
    torch.manual_seed(0)
    model = create_model("lstm", vocab_size=301, d_model=16, layers=2, dropout=0.0)
    x = torch.randint(301, (3, 7))
    y = torch.randint(301, (3, 7))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused, _ = model(x, return_state=True, targets=y)
        logits = model(x)  # (3, 7, 301)
    ref = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
    # both run the decoder matmul in bf16; only the reduction order differs
    torch.testing.assert_close(fused, ref, rtol=2e-3, atol=2e-3)
    with torch.no_grad():
        exact = F.cross_entropy(model(x).flatten(0, 1), y.flatten())  # fp32
    fused32 = model(x, targets=y)
    torch.testing.assert_close(fused32, exact, rtol=1e-5, atol=1e-6)


class _Shapes(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the shape of every tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


@pytest.mark.parametrize("bias", [True, False])
def test_without_grad_only_the_loss_is_computed(bias):
    """Under no_grad (or when nothing requires grad) no gradient is computed: the same value as
    F.cross_entropy, no (V, H) or (N, H) gradient buffer, no softmax. Negative control: with
    grad enabled the (V, H) buffer does appear."""
    g = torch.Generator().manual_seed(2)
    n, v, hdim = 23, 37, 8
    h = torch.randn(n, hdim, generator=g, requires_grad=True)
    w = torch.randn(v, hdim, generator=g, requires_grad=True)
    b = torch.randn(v, generator=g, requires_grad=True) if bias else None
    t = torch.randint(v, (n,), generator=g)
    t[5] = -100
    ref = F.cross_entropy(F.linear(h, w, b), t).detach()
    for ctx, args in (
        (torch.no_grad(), (h, w, b)),
        (torch.enable_grad(), (h.detach(), w.detach(), None if b is None else b.detach())),
    ):
        with ctx, _Shapes() as rec:
            got = linear_cross_entropy(*args, t, chunk_elems=5 * v)  # 5 rows per chunk
        torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
        assert got.grad_fn is None
        assert (v, hdim) not in rec.shapes and (n, hdim) not in rec.shapes, rec.shapes
    with _Shapes() as rec:
        linear_cross_entropy(h, w, b, t, chunk_elems=5 * v)
    assert (v, hdim) in rec.shapes  # the gradient path allocates grad_w


@pytest.mark.parametrize("scale", [1.0, 1e3])  # 1e3: exp(z) overflows fp32 without the max shift
@pytest.mark.parametrize("vocab_block", [1024, 4])
def test_fp32_path_is_stable_and_matches_unfused(scale, vocab_block, monkeypatch):
    monkeypatch.setattr(layers, "_VOCAB_BLOCK", vocab_block)
    # fp32 in and fp32 matmuls, as on a CPU where auto picks fp32; large logits need the max shift
    g = torch.Generator().manual_seed(2)
    h = (scale * torch.randn(41, 16, generator=g)).requires_grad_()
    w = torch.randn(53, 16, generator=g, requires_grad=True)
    b = torch.randn(53, generator=g, requires_grad=True)
    t = torch.randint(53, (41,), generator=g)
    t[5] = -100
    ref, gref = _grads(lambda: F.cross_entropy(F.linear(h, w, b), t), h, w, b)
    got, ggot = _grads(lambda: linear_cross_entropy(h, w, b, t, chunk_elems=53 * 7), h, w, b)
    assert torch.isfinite(got) and all(torch.isfinite(x).all() for x in ggot)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4 * scale)
    for a, r in zip(ggot, gref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5 * scale)
