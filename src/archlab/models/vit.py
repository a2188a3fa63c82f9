"""A Vision Transformer classifier (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words").

Reads top to bottom: config → Attention → Block → ViT → mean_attention_distance. The image is cut
into non-overlapping ``patch_size`` squares, each linearly embedded (a Conv2d with kernel = stride =
patch, which is exactly a shared linear map of the flattened patch), a learned position is added to
each token, pre-norm Transformer blocks mix all tokens with each other (no mask), and the class is
read from a class token (ViT §3.1) or from the mean of the patch tokens (``pool="mean"``).

``tokenizer="spt"``: Shifted Patch Tokenization (Lee, Lee & Song 2021, "Vision Transformer for
Small-Size Datasets", §3.2): the image is concatenated with four copies shifted diagonally by half a
patch (zero-filled), so each token sees its patch and the overlapping halves of its neighbours; the
5C·p² patch vectors are layer-normalized, then linearly embedded. It widens each token's receptive
field at the input, which the paper found worth +1 to +4 points on small datasets; the attention
and everything after it are unchanged. Cost: the embedding's input grows 5x (a few percent of a
small ViT's FLOPs).

Tokens: N = (image_size / patch_size)^2 patches (+1 class token). Attention costs O(N^2 d) per layer
— small patches make many tokens (32 px, patch 4 → 64 patches).

``tokenizer="conv"``: a convolutional stem (Xiao et al. 2021, "Early Convolutions Help Transformers
See Better", §3): the patchify convolution is replaced by a stack of 3x3 stride-2 conv-BN-ReLU
layers (channels doubling up to ``d_model``, one per factor 2 of the patch size; an odd remainder r
of the patch size becomes a last r x r stride-r conv), then a 1x1 conv to ``d_model``. Same token
grid, same Transformer; the stem overlaps neighbouring patches and adds the CNN's locality prior at
the input, which the paper found makes ViTs converge faster, train more stably and reach higher
accuracy with the same FLOPs. It is a hybrid: what it gains is the seed's Part 2 argument for
convolutions, measured (``benchmarks/image_fmnist.py`` reports it beside the pure ViT).

``lsa=True``: Locality Self-Attention (same paper, §3.3): each head's softmax temperature is learned
(initialized to the usual sqrt(head size)) and a token's score with itself is masked out, so
attention cannot collapse onto the token itself and can sharpen where it helps; the paper found
SPT and LSA worth more together than either alone on small datasets. Cost: one scalar per head.

``attn_window=w``: local attention, an ablation of the global view (V1 in the study): a patch
attends only to patches at most ``w`` grid steps away in each direction (a (2w+1)² window, as
the local self-attention of Ramachandran et al. 2019, "Stand-Alone Self-Attention in Vision
Models"); a class token, if any, still attends to and is attended by every patch. ``None``: global
attention (ViT).

``model(x)`` -> logits (B, num_classes); ``model(x, return_attn=True)`` -> (logits, attn) with one
(B, heads, N_tokens, N_tokens) tensor of softmax weights per layer, computed explicitly on that path
only (training uses ``F.scaled_dot_product_attention``, which never materializes them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import ArchlabError
from archlab.models.layers import FeedForward, attention
from archlab.models.registry import register_model, register_preset

POOLS = ("cls", "mean")
TOKENIZERS = ("linear", "spt", "conv")
_DIAGONALS = ((-1, -1), (-1, 1), (1, -1), (1, 1))  # up-left, up-right, down-left, down-right


@dataclass
class ViTConfig:
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    patch_size: int = 4
    d_model: int = 128
    layers: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0  # feed-forward width = mlp_ratio * d_model (ViT Table 1: 4x)
    pool: str = "cls"
    tokenizer: str = "linear"  # "linear" (ViT) | "spt" (shifted patches) | "conv" (conv stem)
    dropout: float = 0.0
    lsa: bool = False  # Locality Self-Attention: learned temperature, no self-token score
    attn_window: int | None = None  # local attention: patches within w grid steps; None: global
    patch_dropout: float = 0.0  # training only: fraction of patch tokens dropped per image

    def __post_init__(self) -> None:
        for name in "in_channels image_size num_classes patch_size d_model layers heads".split():
            if getattr(self, name) < 1:
                raise ArchlabError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size % self.patch_size:
            raise ArchlabError(
                f"patch_size ({self.patch_size}) must divide image_size ({self.image_size})"
            )
        if self.d_model % self.heads:
            raise ArchlabError(
                f"d_model ({self.d_model}) must be divisible by heads ({self.heads})"
            )
        if not math.isfinite(self.mlp_ratio) or round(self.mlp_ratio * self.d_model) < 1:
            raise ArchlabError(f"mlp_ratio must be a finite number > 0, got {self.mlp_ratio}")
        if self.pool not in POOLS:
            raise ArchlabError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if self.tokenizer not in TOKENIZERS:
            raise ArchlabError(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ArchlabError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.attn_window is not None and self.attn_window < 0:
            raise ArchlabError(f"attn_window must be >= 0 or None, got {self.attn_window}")
        if not 0.0 <= self.patch_dropout < 1.0:
            raise ArchlabError(f"patch_dropout must be in [0, 1), got {self.patch_dropout}")
        if self.patch_dropout and self.attn_window is not None:
            # the window mask is laid out on the full patch grid; a random subset has no grid
            raise ArchlabError("patch_dropout cannot be combined with attn_window")

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def d_ff(self) -> int:
        return round(self.mlp_ratio * self.d_model)


class ShiftedPatchTokens(nn.Module):
    """SPT (Lee et al. 2021, eq. 2-3): [x, 4 diagonal half-patch shifts] -> patches -> LN ->
    linear."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.p = cfg.patch_size
        dim = 5 * cfg.in_channels * cfg.patch_size**2
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, cfg.d_model)

    def shifted(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 5C, H, W): x and x shifted by (+-s, +-s), s = p // 2, zero-filled."""
        s, (h, w) = self.p // 2, x.shape[-2:]
        xp = F.pad(x, (s, s, s, s))  # (B, C, H+2s, W+2s)
        # output (i, j) of the copy shifted by (dy, dx) reads x(i - dy, j - dx)
        shifts = [(sy * s, sx * s) for sy, sx in _DIAGONALS]
        views = [xp[..., s - dy : s - dy + h, s - dx : s - dx + w] for dy, dx in shifts]
        return torch.cat([x, *views], dim=1)  # (B, 5C, H, W)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 5C, H, W) -> (B, N, 5C·p²), patches in row-major order, each flattened (c, y, x)."""
        b, c, h, w = x.shape
        p = self.p
        x = x.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, g, g, 5C, p, p)
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(self.patches(self.shifted(x))))  # (B, N, d)


class ConvStem(nn.Module):
    """Xiao et al. 2021 §3: [3x3 stride-2 conv, BN, ReLU] per factor 2 of the patch, 1x1 conv to d.

    Channels double up to ``d_model`` (d/2^(k-1), ..., d for k stride-2 layers, as the paper's
    stems end at the model width); an odd remainder r of the patch size (patch 7, 28 px) is one
    r x r stride-r conv-BN-ReLU. (B, C, H, W) -> (B, d, H/p, W/p), the patchify conv's grid.
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        k, rest = 0, cfg.patch_size
        while rest % 2 == 0:
            k, rest = k + 1, rest // 2
        specs = [(3, 2, 1)] * k + ([(rest, rest, 0)] if rest > 1 else [])  # (kernel, stride, pad)
        widths = [max(1, cfg.d_model >> (len(specs) - 1 - i)) for i in range(len(specs))]
        layers: list[nn.Module] = []
        c_in = cfg.in_channels
        for (ks, st, pad), c_out in zip(specs, widths, strict=True):
            layers += [
                nn.Conv2d(c_in, c_out, ks, st, pad, bias=False),  # bias is BN's shift
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, cfg.d_model, kernel_size=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, d, g, g)


def window_mask(cfg: ViTConfig) -> torch.Tensor | None:
    """(N_tokens, N_tokens) bool, True = may attend, for ``cfg.attn_window``; None when global."""
    if cfg.attn_window is None:
        return None
    g = cfg.grid_size
    ys, xs = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()  # (N,)
    near = ((ys[:, None] - ys[None, :]).abs() <= cfg.attn_window) & (
        (xs[:, None] - xs[None, :]).abs() <= cfg.attn_window
    )  # (N, N)
    if cfg.pool == "cls":  # the class token sees and is seen by everything
        near = F.pad(near, (1, 0, 1, 0), value=True)
    return near


class Attention(nn.Module):
    """Multi-head self-attention over all tokens (bidirectional), or a local window of them."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.heads = cfg.heads
        local = window_mask(cfg)
        self.register_buffer("local", local, persistent=False)
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        hs = cfg.d_model // cfg.heads
        # LSA: per-head learned multiplier of q k^T, initialized to ViT's fixed 1/sqrt(hs)
        self.scale = nn.Parameter(torch.full((cfg.heads,), hs**-0.5)) if cfg.lsa else None

    def forward(
        self, x: torch.Tensor, return_attn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, N, C = x.shape
        hs = C // self.heads
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B, N, C)
        q = q.view(B, N, self.heads, hs).transpose(1, 2)  # (B, nh, N, hs)
        mask = self.local  # (N, N) True = may attend, or None (global)
        if self.scale is not None:  # LSA: q k^T * scale; SDPA divides by sqrt(hs) itself
            q = q * (self.scale * math.sqrt(hs)).to(q.dtype).view(1, -1, 1, 1)
            off = ~torch.eye(N, dtype=torch.bool, device=x.device)  # (N, N) no self-token score
            mask = off if mask is None else mask & off
        k = k.view(B, N, self.heads, hs).transpose(1, 2)  # (B, nh, N, hs)
        v = v.view(B, N, self.heads, hs).transpose(1, 2)  # (B, nh, N, hs)
        p = self.dropout if self.training else 0.0
        att = None
        if return_attn:  # softmax(q k^T / sqrt(hs)) — Vaswani et al. 2017 eq. 1, materialized
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, N, N)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            att = torch.softmax(scores, dim=-1)  # (B, nh, N, N)
            y = F.dropout(att, p, self.training) @ v  # (B, nh, N, hs)
        else:
            y = attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, nh, N, hs)
        y = y.transpose(1, 2).contiguous().view(B, N, C)  # (B, N, C)
        return self.resid_dropout(self.proj(y)), att


class Block(nn.Module):
    """Pre-norm block (ViT eq. 2–3): x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.mlp = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)

    def forward(
        self, x: torch.Tensor, return_attn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, att = self.attn(self.ln_1(x), return_attn)
        x = x + a  # (B, N, C)
        x = x + self.mlp(self.ln_2(x))  # (B, N, C)
        return x, att


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.config = cfg
        p, d = cfg.patch_size, cfg.d_model
        if cfg.tokenizer == "spt":
            self.patch_embed: nn.Module = ShiftedPatchTokens(cfg)
        elif cfg.tokenizer == "conv":
            self.patch_embed = ConvStem(cfg)
        else:
            self.patch_embed = nn.Conv2d(cfg.in_channels, d, kernel_size=p, stride=p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.pool == "cls" else None
        n_tokens = cfg.num_patches + (1 if cfg.pool == "cls" else 0)
        self.pos_emb = nn.Parameter(torch.zeros(1, n_tokens, d))  # learned (ViT §3.1)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.num_classes)
        # timm's ViT init: truncated N(0, 0.02) for positions, class token and Linear weights.
        nn.init.trunc_normal_(self.pos_emb, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def kept_patches(self) -> int:
        """How many of the N patch tokens a training forward keeps under ``patch_dropout``."""
        n = self.config.num_patches
        return max(1, round(n * (1.0 - self.config.patch_dropout)))

    def drop_patches(self, x: torch.Tensor) -> torch.Tensor:
        """PatchDropout (Liu et al. 2023, "PatchDropout: Economizing Vision Transformers Using
        Patch Dropout", §3): each training image keeps a uniformly random subset of its patch
        tokens (the class token always), after the position embedding is added, so each kept
        token still knows where it came from. Attention is permutation-equivariant, so the
        subset's order does not matter; every layer then costs ~keep (MLP) to ~keep^2
        (attention) of the full sequence, and the paper found accuracy held or rose for the
        same epochs: a regularizer that also buys epochs. (B, n_cls + N, C) -> (B, n_cls + k, C).
        """
        off = 1 if self.cls_token is not None else 0
        patches = x[:, off:]  # (B, N, C)
        B, N, C = patches.shape
        k = self.kept_patches()
        idx = torch.rand(B, N, device=x.device).argsort(dim=1)[:, :k]  # (B, k) uniform subsets
        kept = patches.gather(1, idx.unsqueeze(-1).expand(B, k, C))  # (B, k, C)
        return torch.cat((x[:, :off], kept), dim=1)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, N_tokens, C): the patch embeddings in row-major order (after
        the class token, if any), each plus its learned position — what the first block reads."""
        x = self.patch_embed(x)  # SPT: (B, N, C); linear / conv stem: (B, C, g, g)
        if self.config.tokenizer != "spt":
            x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(x.size(0), -1, -1), x), dim=1)  # (B, 1+N, C)
        return x + self.pos_emb  # (B, N_tokens, C)

    def forward(
        self, x: torch.Tensor, return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.drop(self.tokens(x))  # (B, N_tokens, C)
        if self.training and self.config.patch_dropout:
            x = self.drop_patches(x)  # (B, n_cls + kept, C)
        attns: list[torch.Tensor] = []
        for block in self.blocks:
            x, att = block(x, return_attn)
            if att is not None:
                attns.append(att)
        x = self.ln_f(x)  # (B, N_tokens, C)
        x = x[:, 0] if self.cls_token is not None else x.mean(dim=1)  # (B, C)
        logits = self.head(x)  # (B, num_classes)
        return (logits, attns) if return_attn else logits


def mean_attention_distance(attn: torch.Tensor, cfg: ViTConfig) -> torch.Tensor:
    """Mean attention distance in pixels per head (Dosovitskiy et al. 2020 Fig. 7 / App. D.7).

    ``attn`` is one layer's weights (B, heads, N_tokens, N_tokens) from
    ``forward(return_attn=True)``. For each patch query, the weights over patch keys (class token
    dropped, rows renormalized) are averaged against the pixel distance between patch centres; the
    result is the mean over queries and images, shape (heads,). Uniform attention gives the mean
    pairwise patch distance; attending only to oneself gives 0.
    """
    g, off = cfg.grid_size, (1 if cfg.pool == "cls" else 0)
    a = attn[:, :, off:, off:].float()  # (B, nh, N, N) patch-to-patch
    a = a / a.sum(dim=-1, keepdim=True)
    ys, xs = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    centres = torch.stack((ys.flatten(), xs.flatten()), dim=1).float() * cfg.patch_size  # (N, 2) px
    dist = torch.cdist(centres, centres).to(a.device)  # (N, N) pixels
    return (a * dist).sum(dim=-1).mean(dim=(0, 2))  # (nh,)


@register_model("vit", ViTConfig, task="image")
def _build(cfg: ViTConfig) -> ViT:
    return ViT(cfg)


# Fashion-MNIST 28 px, patch 4 (49 tokens + cls), 96 wide, 4 layers of 3 heads, Shifted Patch
# Tokenization: the image benchmark's ViT (~0.46M params; benchmarks/image_fmnist.py).
register_preset("vit-fmnist", "vit", patch_size=4, d_model=96, layers=4, heads=3, tokenizer="spt")
# CIFAR-10 32 px, patch 4 (64 tokens + cls), ViT-Tiny-like width 192, 3 heads of 64, 9 layers.
register_preset(
    "vit-cifar", "vit", in_channels=3, image_size=32, patch_size=4, d_model=192, layers=9, heads=3
)

__all__ = [
    "window_mask",
    "ConvStem",
    "ShiftedPatchTokens",
    "ViT",
    "ViTConfig",
    "mean_attention_distance",
]
