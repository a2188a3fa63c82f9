"""Tasks for the Trainer: next-token language modelling and image classification.

A task decides which rows form the batch of step ``s`` — always a pure function of ``(seed, s)``
(documented per task below), so resuming needs no iterator state and N data-parallel ranks each
take a contiguous slice of exactly the global batch one rank would see — plus the loss and a
full-pass evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.data.batching import (
    IGNORE_INDEX,
    batchify,
    get_batch,
    sliding_window_eval,
    stream_eval_batches,
)
from archlab.errors import ArchlabError
from archlab.train.config import fold_seed
from archlab.train.distill import Distillation, distillation_loss
from archlab.train.distributed import DistInfo

__all__ = [
    "ClassificationTask",
    "LMTask",
    "classify_batches",
    "evaluate_lm",
    "is_stateful",
    "normalize_images",
]

_DATA_SALT = 0xDA7A  # separates the data stream from the dropout stream of the same step
_AUG_SALT = 0xA116


def _raw(model: nn.Module) -> nn.Module:
    """The user's module under DDP / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


def is_stateful(model: nn.Module) -> bool:
    """A recurrent LM (``init_state`` + ``model(idx, state, return_state=True)``)."""
    return hasattr(_raw(model), "init_state")


class LMTask:
    """Next-token prediction on 1-D int64 token streams (mean cross-entropy in nats/token).

    Training batches (global batch ``batch_size`` rows of ``block_size`` tokens):

    * ``stateful=False`` (GPT): nanoGPT-style random windows; micro-batch ``m`` of step ``s`` draws
      its window starts from a generator seeded with ``fold_seed(seed, s, m)``.
    * ``stateful=True`` (RNN/LSTM/GRU): truncated BPTT as pytorch/examples
      ``word_language_model``: the train stream is cut into ``batch_size`` contiguous streams
      (``batchify``), chunk ``c = s * grad_accum + m`` of an epoch is positions
      ``[c*T, (c+1)*T)`` of every stream, and the hidden state is carried (detached) from chunk to
      chunk and reset to zero at the start of each epoch. Only whole chunks are used (the < T
      leftover tokens per stream and epoch are skipped) so every batch has the same shape. The
      carried state is checkpointed (``state_dict``), so resume is exact.

    Evaluation is a full pass where every target is scored exactly once: the GPT with a sliding
    window of ``block_size`` tokens moved by ``eval_stride`` (every target after the first window
    sees at least ``block_size - eval_stride + 1`` tokens of context); an RNN over
    ``eval_streams`` contiguous streams with its state carried across chunks.
    """

    unit = "tokens"

    def __init__(
        self,
        train: torch.Tensor,
        val: torch.Tensor,
        test: torch.Tensor | None = None,
        *,
        block_size: int,
        batch_size: int,
        seed: int,
        stateful: bool,
        eval_stride: int | None = None,
        eval_batch_size: int = 32,
        eval_streams: int = 10,
    ) -> None:
        if block_size < 1:
            raise ArchlabError(f"block size must be >= 1, got {block_size}")
        self.splits = {"train": train, "val": val, "test": test if test is not None else val}
        self.T, self.B, self.seed, self.stateful = block_size, batch_size, seed, stateful
        self.eval_stride = eval_stride or block_size
        self.eval_batch_size, self.eval_streams = eval_batch_size, eval_streams
        for name in ("train", "val"):
            if self.splits[name].numel() <= block_size + 1:
                raise ArchlabError(
                    f"the {name} split has {self.splits[name].numel()} tokens, too few for block "
                    f"size {block_size}; use a smaller --block-size or more text"
                )
        self._streams: torch.Tensor | None = None
        self._state: Any = None
        if stateful:
            self._streams = batchify(train, batch_size)  # (L, B): column b is stream b
            self.chunks_per_epoch = (self._streams.size(0) - 1) // block_size
            if self.chunks_per_epoch < 1:
                raise ArchlabError(
                    f"{train.numel()} train tokens in {batch_size} streams are too few for "
                    f"block size {block_size}"
                )

    # -------------------------------------------------------------- training
    def train_batch(self, step: int, micro: int, grad_accum: int, dist: DistInfo) -> Any:
        rows = dist.shard(self.B)
        if self.stateful:
            assert self._streams is not None
            c = step * grad_accum + micro
            i = c % self.chunks_per_epoch
            a = i * self.T
            x = self._streams[a : a + self.T, rows].t()  # (B/world, T)
            y = self._streams[a + 1 : a + 1 + self.T, rows].t()  # (B/world, T)
            return x.contiguous(), y.contiguous(), i == 0
        g = torch.Generator().manual_seed(fold_seed(self.seed, step, micro, _DATA_SALT))
        x, y = get_batch(self.splits["train"], self.B, self.T, g)  # (B, T) each
        return x[rows], y[rows]

    def train_loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        if self.stateful:
            x, y, reset = batch
            raw = _raw(model)
            if reset or self._state is None:
                self._state = raw.init_state(x.size(0), x.device)
            if getattr(raw, "fused_loss", False):  # loss fused with the decoder, no logits
                loss, state = model(x, self._state, return_state=True, targets=y)
                self._state = raw.detach_state(state)
                return loss, y.numel()
            logits, state = model(x, self._state, return_state=True)  # (B, T, V)
            self._state = raw.detach_state(state)
        else:
            x, y = batch
            logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        return loss, y.numel()

    # ---------------------------------------------------------- carried state
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The carried hidden state, batch-first: h (B, L, H) (and c for an LSTM)."""
        if not self.stateful or self._state is None:
            return {}
        if isinstance(self._state, tuple):
            return {"h": self._state[0].transpose(0, 1), "c": self._state[1].transpose(0, 1)}
        return {"h": self._state.transpose(0, 1)}

    def load_state_dict(self, state: dict[str, torch.Tensor], dist: DistInfo) -> None:
        if not self.stateful or not state:
            return
        rows = dist.shard(self.B)
        dev = torch.device(dist.device)
        h = state["h"][rows].transpose(0, 1).contiguous().to(dev)  # (L, B/world, H)
        if "c" in state:
            self._state = (h, state["c"][rows].transpose(0, 1).contiguous().to(dev))
        else:
            self._state = h

    # ------------------------------------------------------------ evaluation
    def eval_protocol(self) -> dict[str, Any]:
        if self.stateful:
            return {"protocol": "stateful", "streams": self.eval_streams, "bptt": self.T}
        return {"protocol": "sliding-window", "window": self.T, "stride": self.eval_stride}

    def evaluate(self, model: nn.Module, split: str = "val") -> dict[str, float]:
        """Full pass over ``split``: ``loss`` (nats/token), ``perplexity``, ``tokens`` scored."""
        return evaluate_lm(
            model,
            self.splits[split],
            block_size=self.T,
            stateful=self.stateful,
            stride=self.eval_stride,
            batch_size=self.eval_batch_size,
            streams=self.eval_streams,
        )


@torch.no_grad()
def evaluate_lm(
    model: nn.Module,
    data: torch.Tensor,
    *,
    block_size: int,
    stateful: bool,
    stride: int | None = None,
    batch_size: int = 32,
    streams: int = 10,
) -> dict[str, float]:
    """Mean cross-entropy (nats/token) over every target of ``data`` (N tokens -> N - 1 targets).

    Fixed-context models: sliding windows of ``block_size`` moved by ``stride`` (default
    ``block_size``), see :func:`archlab.data.sliding_window_eval`. Recurrent models: ``streams``
    contiguous streams read in ``block_size`` chunks with the state carried, see
    :func:`archlab.data.stream_eval_batches`. Returns ``loss``, ``perplexity`` = exp(loss),
    ``tokens`` scored, and the protocol (``window``/``stride`` or ``streams``/``bptt``).
    """
    raw = _raw(model)
    device = next(raw.parameters()).device
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.int64, device=device)
    if stateful:
        state = None
        batches = stream_eval_batches(data, streams, block_size)
    else:
        batches = sliding_window_eval(data, block_size, stride or block_size, batch_size)
    for x, y in batches:
        x, y = x.to(device), y.to(device)  # (b, T)
        if stateful:
            logits, state = raw(x, state, return_state=True)  # (b, T, V)
        else:
            logits = model(x)  # (b, T, V)
        total += F.cross_entropy(
            logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        count += (y != IGNORE_INDEX).sum()  # stays on the device: no host sync per batch
    n = int(count)
    loss = float(total) / max(n, 1)
    if stateful:
        proto = {"protocol": "stateful", "streams": streams, "bptt": block_size}
    else:
        proto = {"protocol": "sliding-window", "window": block_size, "stride": stride or block_size}
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": n, **proto}


class ClassificationTask:
    """Image classification: mean cross-entropy (optionally label-smoothed), accuracy.

    Images are stored as given (uint8 or float, (N, C, H, W)) and converted per batch (on the
    device) to float, scaled to [0, 1] if uint8, then normalized with per-channel ``mean``/``std``.
    ``augment(x, generator)`` (e.g. :func:`archlab.data.augment_batch`) transforms the raw global
    training micro-batch on the CPU before each rank takes its rows, drawing from a generator seeded
    with ``fold_seed(seed, step, micro)``, so augmentation too is a function of (seed, step).

    Data order: epoch ``e`` visits the training set in ``randperm(N)`` drawn from
    ``fold_seed(seed, e)``; global micro-batch ``c = step * grad_accum + micro`` is rows
    ``[(c mod K) * B, (c mod K + 1) * B)`` of epoch ``c // K``'s permutation, with
    ``K = N // B`` batches per epoch (the remainder of each epoch is dropped).

    ``distill``: a teacher's logits for every training image (:mod:`archlab.train.distill`); each
    batch then carries its rows of them and the loss mixes in the teacher's term.
    """

    unit = "images"

    def __init__(
        self,
        train: tuple[torch.Tensor, torch.Tensor],
        val: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor] | None = None,
        *,
        batch_size: int,
        seed: int,
        mean: list[float] | tuple[float, ...],
        std: list[float] | tuple[float, ...],
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        label_smoothing: float = 0.0,
        eval_batch_size: int = 500,
        distill: Distillation | None = None,
    ) -> None:
        self.splits = {"train": train, "val": val, "test": test if test is not None else val}
        n = train[0].size(0)
        if distill is not None and distill.logits.size(0) != n:
            raise ArchlabError(
                f"teacher logits cover {distill.logits.size(0)} images, the train split has {n}"
            )
        self.distill = distill
        if n < batch_size:
            raise ArchlabError(f"{n} training images are fewer than the batch size {batch_size}")
        self.B, self.seed = batch_size, seed
        self.batches_per_epoch = n // batch_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment = augment
        self.label_smoothing = label_smoothing
        self.eval_batch_size = eval_batch_size
        self._perm: tuple[int, torch.Tensor] | None = None

    def _epoch_perm(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(fold_seed(self.seed, epoch, _DATA_SALT))
            self._perm = (epoch, torch.randperm(self.splits["train"][0].size(0), generator=g))
        return self._perm[1]

    def train_batch(self, step: int, micro: int, grad_accum: int, dist: DistInfo) -> Any:
        c = step * grad_accum + micro
        epoch, i = divmod(c, self.batches_per_epoch)
        idx = self._epoch_perm(epoch)[i * self.B : (i + 1) * self.B]  # (B,) global micro-batch
        x, y = self.splits["train"]
        x, y = x[idx], y[idx]  # (B, C, H, W), (B,)
        if self.augment is not None:
            g = torch.Generator().manual_seed(fold_seed(self.seed, step, micro, _AUG_SALT))
            x = self.augment(x, g)  # (B, C, H, W)
        rows = dist.shard(self.B)
        if self.distill is not None:  # the teacher's logits of these images (un-augmented)
            t = self.distill.logits[idx]  # (B, classes)
            return x[rows], y[rows], t[rows]
        return x[rows], y[rows]  # (B/world, C, H, W), (B/world,)

    def train_loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        x, y = batch[:2]
        logits = model(normalize_images(x, self.mean, self.std))  # (B, classes)
        if self.distill is not None:
            t = batch[2]  # (B, classes) the teacher's logits
            loss = distillation_loss(logits, y, t, self.distill, self.label_smoothing)
        else:
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        return loss, y.numel()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor], dist: DistInfo) -> None:
        return None

    def evaluate(self, model: nn.Module, split: str = "val") -> dict[str, float]:
        """Full pass: ``loss`` (plain cross-entropy, no smoothing), ``accuracy``, ``examples``."""
        x, y = self.splits[split]
        logits = classify_batches(model, x, self.mean, self.std, self.eval_batch_size)  # (N, K)
        return {
            "loss": float(F.cross_entropy(logits, y, reduction="mean")),
            "accuracy": float((logits.argmax(-1) == y).float().mean()),
            "examples": int(y.numel()),
        }


@torch.no_grad()
def classify_batches(
    model: nn.Module,
    x: torch.Tensor,
    mean: torch.Tensor | list[float] | tuple[float, ...],
    std: torch.Tensor | list[float] | tuple[float, ...],
    batch_size: int = 500,
) -> torch.Tensor:
    """fp32 logits (N, classes) on the CPU for images ``x`` (N, C, H, W), normalized as in
    training."""
    device = next(_raw(model).parameters()).device
    out = []
    for a in range(0, x.size(0), batch_size):
        xb = normalize_images(x[a : a + batch_size].to(device), mean, std)  # (b, C, H, W)
        out.append(model(xb).float().cpu())  # (b, classes)
    return torch.cat(out)


def normalize_images(
    x: torch.Tensor,
    mean: torch.Tensor | list[float] | tuple[float, ...],
    std: torch.Tensor | list[float] | tuple[float, ...],
) -> torch.Tensor:
    """(x / 255 - mean) / std per channel for uint8 ``x`` (a float ``x`` is taken as in [0, 1])."""
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(
        1, -1, 1, 1
    )  # (1, C, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)  # (1, C, 1, 1)
    return (x - m) / s  # (B, C, H, W)
