"""Linear, Embedding, LayerNorm, BatchNorm, Conv1d/Conv2d and ViT patch embedding.

Parameter shapes follow the PyTorch docs of each module (``torch.nn.Linear``: weight
(out_features, in_features), bias (out_features); ``torch.nn.Conv2d``: weight
(out_channels, in_channels/groups, kH, kW), output size floor((in + 2p - d(k-1) - 1)/s) + 1).
Keras' Dense/Conv2D/Embedding/LayerNormalization hold the same number of parameters (kernels are
stored transposed); only BatchNormalization differs (its moving statistics are weights).
"""

from __future__ import annotations

from collections.abc import Sequence

from archlab.cost.formulas._base import (
    AFFINE_FLOPS,
    NORM_FLOPS,
    Derivation,
    Sym,
    check_convention,
    dtype_bytes,
    optional_positive,
    positive,
    tuple_of,
)
from archlab.cost.types import ConventionDiff, LayerCost
from archlab.errors import ArchlabError

__all__ = [
    "batchnorm",
    "conv",
    "conv1d",
    "conv2d",
    "embedding",
    "layernorm",
    "linear",
    "patch_embed",
]

Size = int | Sequence[int]


def _tokens(batch_size: int | None, seq_len: int | None) -> tuple[bool, int | None, int | None]:
    """Token-wise layers run on (B, n, features); either size alone means the other is 1."""
    b, n = optional_positive("batch_size", batch_size), optional_positive("seq_len", seq_len)
    sized = b is not None or n is not None
    return sized, (b or 1) if sized else None, (n or 1) if sized else None


def linear(
    in_features: int,
    out_features: int,
    *,
    bias: bool = True,
    batch_size: int | None = None,
    seq_len: int | None = None,
    dtype: int | str = 4,
    convention: str = "pytorch",
) -> LayerCost:
    """``nn.Linear`` (Keras ``Dense``): y = x Wᵀ + b on (B, n, in_features)."""
    i, o = positive("in_features", in_features), positive("out_features", out_features)
    sized, B, n = _tokens(batch_size, seq_len)
    cfg = dict(in_features=i, out_features=o, bias=bias, batch_size=batch_size, seq_len=seq_len)
    d = Derivation(
        "linear",
        cfg,
        check_convention(convention),
        dict(
            i=Sym("in_features", i),
            o=Sym("out_features", o),
            B=Sym("batch_size", B),
            n=Sym("seq_len", n),
        ),
        dtype=dtype_bytes(dtype),
        order=("n", "i", "o"),
    )
    d.param("weight", (o, i), "o*i")
    d.flop("x @ weight.T", "dense", "2*B*n*i*o")
    if bias:
        d.param("bias", (o,), "o")
        d.flop("+ bias", "pointwise", "B*n*o")
    d.save("input x (B, n, i)", "B*n*i")
    return d.finish(sized)


def embedding(
    num_embeddings: int,
    embedding_dim: int,
    *,
    padding_idx: int | None = None,
    batch_size: int | None = None,
    seq_len: int | None = None,
    dtype: int | str = 4,
    convention: str = "pytorch",
) -> LayerCost:
    """``nn.Embedding``: a row gather, 0 FLOPs forward; its backward is a scatter-add
    (pointwise)."""
    V, e = positive("num_embeddings", num_embeddings), positive("embedding_dim", embedding_dim)
    sized, B, n = _tokens(batch_size, seq_len)
    cfg = dict(
        num_embeddings=V,
        embedding_dim=e,
        padding_idx=padding_idx,
        batch_size=batch_size,
        seq_len=seq_len,
    )
    d = Derivation(
        "embedding",
        cfg,
        check_convention(convention),
        dict(
            V=Sym("num_embeddings", V),
            e=Sym("embedding_dim", e),
            B=Sym("batch_size", B),
            n=Sym("seq_len", n),
        ),
        dtype=dtype_bytes(dtype),
        order=("n", "e"),
    )
    note = (
        "the padding_idx row is still a parameter (it gets no gradient)"
        if padding_idx is not None
        else ""
    )
    d.param("weight", (V, e), "V*e", note)
    d.save("indices (B, n) int64", "B*n", 8)
    d.notes.append(
        "forward is a gather of n rows: 0 FLOPs, O(n*e) data movement; backward "
        "scatter-adds B*n*e gradient elements (not dense)"
    )
    cost = d.finish(sized)
    cost.complexity = "O(n*e)"
    if sized:
        cost.flops_forward_dense = cost.flops_forward_pointwise = cost.flops_backward_dense = 0
    return cost


def layernorm(
    normalized_shape: int,
    *,
    elementwise_affine: bool = True,
    bias: bool = True,
    batch_size: int | None = None,
    seq_len: int | None = None,
    dtype: int | str = 4,
    convention: str = "pytorch",
) -> LayerCost:
    """``nn.LayerNorm(d)`` over the last dim (Ba et al. 2016); Keras LayerNormalization: same."""
    D = positive("normalized_shape", normalized_shape)
    sized, B, n = _tokens(batch_size, seq_len)
    cfg = dict(
        normalized_shape=D,
        elementwise_affine=elementwise_affine,
        bias=bias,
        batch_size=batch_size,
        seq_len=seq_len,
    )
    d = Derivation(
        "layernorm",
        cfg,
        check_convention(convention),
        dict(d=Sym("normalized_shape", D), B=Sym("batch_size", B), n=Sym("seq_len", n)),
        dtype=dtype_bytes(dtype),
        order=("n", "d"),
    )
    add_layernorm(d, elementwise_affine, bias)
    return d.finish(sized)


def add_layernorm(d: Derivation, affine: bool, bias: bool, prefix: str = "") -> None:
    """LayerNorm terms into `d` (symbols d, B, n); shared with the Transformer block."""
    d.flop(f"{prefix}normalise (mean, var, (x-mean)/std)", "pointwise", f"{NORM_FLOPS}*B*n*d")
    if affine:
        d.param(f"{prefix}weight", (d.symbols["d"].value,), "d", "gamma")
        if bias:
            d.param(f"{prefix}bias", (d.symbols["d"].value,), "d", "beta")
        d.flop(
            f"{prefix}affine gamma*x_hat + beta" if bias else f"{prefix}scale gamma*x_hat",
            "pointwise",
            f"{AFFINE_FLOPS if bias else 1}*B*n*d",
        )
    # Statistics are saved in the input dtype by the CPU kernel (checked in the tests); CUDA
    # kernels may keep them in float32 for half inputs: 2 x 2 bytes per row more.
    d.save(f"{prefix}input x (B, n, d)", "B*n*d")
    d.save(f"{prefix}mean (B, n, 1)", "B*n")
    d.save(f"{prefix}rstd (B, n, 1)", "B*n")


def batchnorm(
    num_features: int,
    *,
    dims: int = 2,
    affine: bool = True,
    track_running_stats: bool = True,
    batch_size: int | None = None,
    seq_len: int | None = None,
    image_size: Size | None = None,
    dtype: int | str = 4,
    convention: str = "pytorch",
) -> LayerCost:
    """``nn.BatchNorm1d`` on (B, C[, L]) (dims=1, L = seq_len) or ``nn.BatchNorm2d`` on
    (B, C, H, W).

    Costs are for training mode (batch statistics; Ioffe & Szegedy 2015). Running mean/var are
    *buffers* in PyTorch (not in ``parameters()``) but non-trainable *weights* in Keras
    BatchNormalization (its docs: "moving_mean and moving_var are non-trainable variables"),
    which ``model.count_params()`` and ``summary()``'s total include.
    """
    C = positive("num_features", num_features)
    if dims not in (1, 2):
        raise ArchlabError(f"dims must be 1 or 2, got {dims!r}")
    b = optional_positive("batch_size", batch_size)
    if dims == 1:
        L = optional_positive("seq_len", seq_len)
        sized = b is not None or L is not None
        spatial = {"L": Sym("seq_len", (L or 1) if sized else None)}
        sp = "L"
    else:
        hw = tuple_of("image_size", image_size, 2) if image_size is not None else None
        sized = b is not None or hw is not None
        hw = hw or ((1, 1) if sized else (None, None))
        spatial = {"H": Sym("height", hw[0]), "W": Sym("width", hw[1])}
        sp = "H*W"
    cfg = dict(
        num_features=C,
        dims=dims,
        affine=affine,
        track_running_stats=track_running_stats,
        batch_size=batch_size,
        seq_len=seq_len,
        image_size=image_size,
    )
    d = Derivation(
        f"batchnorm{dims}d",
        cfg,
        check_convention(convention),
        dict(C=Sym("num_features", C), B=Sym("batch_size", (b or 1) if sized else None), **spatial),
        dtype=dtype_bytes(dtype),
        order=(*spatial, "C"),
    )
    d.flop("normalise with batch statistics", "pointwise", f"{NORM_FLOPS}*B*C*{sp}")
    if affine:
        d.param("weight", (C,), "C", "gamma")
        d.param("bias", (C,), "C", "beta")
        d.flop("affine gamma*x_hat + beta", "pointwise", f"{AFFINE_FLOPS}*B*C*{sp}")
    if track_running_stats:
        if convention == "keras":
            for name in ("moving_mean", "moving_variance"):
                d.param(name, (C,), "C", "non-trainable weight, counted in Keras' total params")
        d.diffs.append(
            ConventionDiff(
                "running mean/var",
                0,
                2 * C,
                "PyTorch registers running_mean/running_var (and num_batches_tracked) as "
                "buffers, not parameters; Keras BatchNormalization keeps "
                "moving_mean/moving_variance as non-trainable weights, included in count_params()",
            )
        )
    d.save(f"input x (B, C, {sp.replace('*', ', ')})", f"B*C*{sp}")
    d.save("save_mean (C)", "C")  # input dtype on CPU, as LayerNorm's statistics
    d.save("save_invstd (C)", "C")
    return d.finish(sized)


def conv(
    in_channels: int,
    out_channels: int,
    kernel_size: Size,
    *,
    dims: int = 2,
    stride: Size = 1,
    padding: Size | str = 0,
    dilation: Size = 1,
    groups: int = 1,
    bias: bool = True,
    image_size: Size | None = None,
    batch_size: int | None = None,
    dtype: int | str = 4,
    convention: str = "pytorch",
) -> LayerCost:
    """``nn.Conv1d`` (dims=1, image_size = input length) / ``nn.Conv2d`` (dims=2)."""
    if dims not in (1, 2):
        raise ArchlabError(f"dims must be 1 or 2, got {dims!r}")
    Ci, Co, g = (
        positive(n, v)
        for n, v in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("groups", groups),
        )
    )
    if Ci % g or Co % g:
        raise ArchlabError(f"groups ({g}) must divide in_channels ({Ci}) and out_channels ({Co})")
    k, s, dil = (
        tuple_of(n, v, dims)
        for n, v in (("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation))
    )
    if padding in ("valid", "same"):
        if padding == "same" and any(x != 1 for x in s):
            raise ArchlabError("padding='same' needs stride 1 (as in PyTorch)")
        pad = (
            tuple(dl * (kk - 1) for dl, kk in zip(dil, k, strict=True))
            if padding == "same"
            else (0,) * dims
        )
        total_pad = pad  # total over both sides
    elif isinstance(padding, str):
        raise ArchlabError(
            f"padding must be an int, {dims} ints, 'valid' or 'same', got {padding!r}"
        )
    else:
        total_pad = tuple(2 * p for p in tuple_of("padding", padding, dims, minimum=0))
    b = optional_positive("batch_size", batch_size)
    size = tuple_of("image_size", image_size, dims) if image_size is not None else None
    sized = size is not None
    out = None
    if size is not None:
        out = []
        for ax, (x, p, kk, dl, st) in enumerate(zip(size, total_pad, k, dil, s, strict=True)):
            span = dl * (kk - 1) + 1
            if span > x + p:
                raise ArchlabError(
                    f"kernel_size {kk} (span {span} with dilation {dl}) is larger than the padded "
                    f"input {x + p} (image_size {x} + padding {p}) along dim {ax}"
                )
            out.append((x + p - span) // st + 1)
    sq = len(set(k)) == 1
    if dims == 1:
        ks, kf, sp_in, sp_out = {"k": Sym("kernel_size", k[0])}, "k", ("L_in",), ("L_out",)
    elif sq:
        ks, kf, sp_in, sp_out = (
            {"k": Sym("kernel_size", k[0])},
            "k**2",
            ("H_in", "W_in"),
            ("H_out", "W_out"),
        )
    else:
        ks = {"k_h": Sym("kernel_size[0]", k[0]), "k_w": Sym("kernel_size[1]", k[1])}
        kf, sp_in, sp_out = "k_h*k_w", ("H_in", "W_in"), ("H_out", "W_out")
    syms = dict(C_in=Sym("in_channels", Ci), C_out=Sym("out_channels", Co), **ks)
    if g > 1:
        syms["g"] = Sym("groups", g)
    syms["B"] = Sym("batch_size", (b or 1) if sized else None)
    for j, name in enumerate(sp_in):
        syms[name] = Sym(f"input size[{j}]", size[j] if size else None)
    for j, name in enumerate(sp_out):
        syms[name] = Sym(f"output size[{j}]", out[j] if out else None)
    # Normalised (tuples per spatial dim), so conv2d(k=3) and a module's (3, 3) read the same.
    cfg = dict(
        in_channels=Ci,
        out_channels=Co,
        kernel_size=k,
        stride=s,
        padding=padding if isinstance(padding, str) else tuple(p // 2 for p in total_pad),
        dilation=dil,
        groups=g,
        bias=bias,
        image_size=size,
        batch_size=b,
    )
    d = Derivation(
        f"conv{dims}d",
        cfg,
        check_convention(convention),
        syms,
        dtype=dtype_bytes(dtype),
        order=(*sp_out, *ks, "C_in", "C_out", "g"),
    )
    cin = "C_in/g" if g > 1 else "C_in"
    d.param(
        "weight",
        (Co, Ci // g, *k),
        f"C_out*{cin}*{kf}",
        f"{Co} filters of shape ({Ci // g}, {', '.join(map(str, k))})",
    )
    pos = "*".join(sp_out)
    d.flop("convolution", "dense", f"2*B*{pos}*C_out*{cin}*{kf}")
    if bias:
        d.param("bias", (Co,), "C_out", "one per filter")
        d.flop("+ bias", "pointwise", f"B*{pos}*C_out")
    d.save(f"input x (B, C_in, {', '.join(sp_in)})", f"B*C_in*{'*'.join(sp_in)}")
    return d.finish(sized)


def conv1d(in_channels: int, out_channels: int, kernel_size: Size, **kw) -> LayerCost:
    """``nn.Conv1d``; ``image_size`` is the input length. See :func:`conv`."""
    return conv(in_channels, out_channels, kernel_size, dims=1, **kw)


def conv2d(in_channels: int, out_channels: int, kernel_size: Size, **kw) -> LayerCost:
    """``nn.Conv2d``. See :func:`conv`."""
    return conv(in_channels, out_channels, kernel_size, dims=2, **kw)


def patch_embed(
    in_channels: int,
    d_model: int,
    patch_size: int,
    *,
    image_size: Size | None = None,
    bias: bool = True,
    batch_size: int | None = None,
    dtype: int | str = 4,
    convention: str = "pytorch",
) -> LayerCost:
    """ViT patch embedding (Dosovitskiy et al. 2021, eq. 1): a Conv2d with kernel = stride = p.

    n = (H/p)(W/p) patches; class token and position embeddings belong to the model, not here.
    """
    C, D, p = (
        positive(n, v)
        for n, v in (("in_channels", in_channels), ("d_model", d_model), ("patch_size", patch_size))
    )
    hw = tuple_of("image_size", image_size, 2) if image_size is not None else None
    if hw is not None and (hw[0] % p or hw[1] % p):
        raise ArchlabError(f"image_size {hw} must be divisible by patch_size {p}")
    b = optional_positive("batch_size", batch_size)
    sized = hw is not None
    cfg = dict(
        in_channels=C,
        d_model=D,
        patch_size=p,
        image_size=image_size,
        bias=bias,
        batch_size=batch_size,
    )
    d = Derivation(
        "patch_embed",
        cfg,
        check_convention(convention),
        dict(
            C=Sym("in_channels", C),
            d=Sym("d_model", D),
            p=Sym("patch_size", p),
            n=Sym("patches (H/p)*(W/p)", (hw[0] // p) * (hw[1] // p) if hw else None),
            B=Sym("batch_size", (b or 1) if sized else None),
        ),
        dtype=dtype_bytes(dtype),
        order=("n", "p", "C", "d"),
    )
    d.param("proj.weight", (D, C, p, p), "d*C*p**2", "Conv2d(C, d, kernel_size=p, stride=p)")
    d.flop("patch projection", "dense", "2*B*n*d*C*p**2")
    if bias:
        d.param("proj.bias", (D,), "d")
        d.flop("+ bias", "pointwise", "B*n*d")
    d.save("image x (B, C, H, W)", "B*C*n*p**2")
    return d.finish(sized)
