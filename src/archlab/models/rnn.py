"""Recurrent language models — ``rnn`` (tanh), ``lstm``, ``gru`` — after pytorch/examples'
``word_language_model``: embedding → dropout → multi-layer ``nn.RNN``/``nn.LSTM``/``nn.GRU``
(batch_first) → dropout → linear decoder.

State API (one clean pair, used by truncated BPTT and by generation):

- ``model(idx)`` -> logits (B, T, vocab), starting from a zero state;
- ``model(idx, state, return_state=True)`` -> (logits, new_state); feeding a text in chunks while
  carrying the state gives the same logits as feeding it whole (tested);
- ``init_state(batch_size)`` -> the zero state: ``h`` (layers, B, H) for rnn/gru, ``(h, c)`` for
  lstm; ``detach_state(state)`` cuts the graph between BPTT windows;
- ``model(idx, lengths=n)`` runs a right-padded batch with ``pack_padded_sequence``: each row's
  logits (up to its length) and final state are those it gets alone (tested); pad positions'
  logits are the decoder's output for a zero hidden vector, to be ignored;
- ``model(inputs_embeds=x)`` starts from embeddings (B, T, E) instead of ids — the entry point for
  gradients with respect to the input; ``model(idx) == model(inputs_embeds=model.embed(idx))``.

``forget_bias`` (lstm only): PyTorch stores each layer's gate biases as chunks [i, f, g, o] of
``bias_ih_l{k}`` and ``bias_hh_l{k}`` (torch.nn.LSTM docs), and the gate sees their sum. We set the
f chunk of ``bias_ih`` to ``forget_bias`` and that of ``bias_hh`` to 0, so the effective forget-gate
bias is exactly ``forget_bias`` (1.0 is the common choice: Gers et al. 2000; Jozefowicz et al.
2015).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from archlab.errors import ArchlabError
from archlab.models.layers import linear_cross_entropy, sample_next_token
from archlab.models.registry import register_model, register_preset

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # h, or (h, c) for the LSTM


@dataclass
class RNNLMConfig:
    """Shared fields; the cell (``rnn``/``lstm``/``gru``) is fixed by the config class."""

    cell: ClassVar[str] = "rnn"

    vocab_size: int = 65
    d_model: int = 200  # embedding width (pytorch/examples --emsize)
    hidden_size: int | None = None  # recurrent width (--nhid); None -> d_model
    layers: int = 2
    dropout: float = 0.2
    tie_weights: bool = False  # decoder shares the embedding; needs hidden_size == d_model

    def __post_init__(self) -> None:
        if self.hidden_size is None:
            self.hidden_size = self.d_model
        for name in ("vocab_size", "d_model", "hidden_size", "layers"):
            if getattr(self, name) < 1:
                raise ArchlabError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ArchlabError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.tie_weights and self.hidden_size != self.d_model:
            raise ArchlabError(
                f"tie_weights needs hidden_size == d_model, got hidden_size={self.hidden_size} "
                f"and d_model={self.d_model}"
            )


@dataclass
class TanhRNNConfig(RNNLMConfig):
    cell: ClassVar[str] = "rnn"


@dataclass
class GRUConfig(RNNLMConfig):
    cell: ClassVar[str] = "gru"


@dataclass
class LSTMConfig(RNNLMConfig):
    cell: ClassVar[str] = "lstm"
    forget_bias: float | None = None  # effective forget-gate bias at init; None: PyTorch's init

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.forget_bias is not None and not math.isfinite(self.forget_bias):
            raise ArchlabError(f"forget_bias must be a finite number, got {self.forget_bias}")


_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def _recurrent_precision(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Under CPU bf16 autocast, keep the fused recurrent kernel in fp32 where oneDNN has no bf16
    primitive for it (AVX2-only CPUs: "could not create a primitive descriptor for the LSTM
    forward propagation primitive"); the embedding, decoder and loss still follow autocast. The
    kernel then reads fp32 inputs, so its outputs are the fp32 model's (tested)."""
    from archlab.hardware import bf16_rnn_ok

    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not bf16_rnn_ok("cpu"):
        return _Fp32Core()
    return contextlib.nullcontext(False)


class _Fp32Core(contextlib.AbstractContextManager):
    """Autocast off inside; ``as`` gives True (the caller casts its inputs to fp32)."""

    def __enter__(self) -> bool:
        self._off = torch.autocast("cpu", enabled=False)
        self._off.__enter__()
        return True

    def __exit__(self, *exc) -> None:
        self._off.__exit__(*exc)


class RNNLanguageModel(nn.Module):
    # forward(..., targets=y) returns the loss, fused with the decoder (trainers check this flag)
    fused_loss: ClassVar[bool] = True

    def __init__(self, cfg: RNNLMConfig):
        super().__init__()
        self.config = cfg
        self.cell = cfg.cell
        H: int = cfg.hidden_size  # type: ignore[assignment]  # set by __post_init__
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        extra = {"nonlinearity": "tanh"} if cfg.cell == "rnn" else {}
        self.rnn = _CELLS[cfg.cell](
            cfg.d_model,
            H,
            num_layers=cfg.layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,  # PyTorch applies it between layers
            **extra,
        )
        self.decoder = nn.Linear(H, cfg.vocab_size)
        # pytorch/examples' init: U(-0.1, 0.1) for embedding and decoder, zero decoder bias;
        # the recurrent weights keep PyTorch's U(-1/sqrt(H), 1/sqrt(H)).
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if cfg.tie_weights:
            self.decoder.weight = self.embedding.weight  # Press & Wolf 2017; one tensor
        forget_bias = getattr(cfg, "forget_bias", None)
        if forget_bias is not None:
            with torch.no_grad():
                for k in range(cfg.layers):
                    getattr(self.rnn, f"bias_ih_l{k}")[H : 2 * H].fill_(forget_bias)  # f chunk
                    getattr(self.rnn, f"bias_hh_l{k}")[H : 2 * H].zero_()

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The zero state for ``batch_size`` sequences (what ``forward`` starts from by default)."""
        cfg = self.config
        device = device if device is not None else self.embedding.weight.device
        h = torch.zeros(cfg.layers, batch_size, cfg.hidden_size, device=device)  # (L, B, H)
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h

    @staticmethod
    def detach_state(state: State) -> State:
        """Cut the autograd graph between truncated-BPTT windows, keeping the values."""
        if isinstance(state, tuple):
            return (state[0].detach(), state[1].detach())
        return state.detach()

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Token embeddings (B, T, E) of ids (B, T), before dropout: ``inputs_embeds``."""
        return self.embedding(idx)

    def forward(
        self,
        idx: torch.Tensor | None = None,
        state: State | None = None,
        return_state: bool = False,
        *,
        inputs_embeds: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, State]:
        """idx (B, T) long, or ``inputs_embeds`` (B, T, E) -> logits (B, T, vocab), or
        (logits, state) with ``return_state``. ``lengths`` (B,): true lengths of right-padded rows.

        With ``targets`` (B, T) it returns the mean cross-entropy (nats/token) in place of the
        logits, computed by :func:`linear_cross_entropy` without materializing the (B, T, vocab)
        logits (the decoder of a word-level LM is most of a training step; same value and
        gradients as ``F.cross_entropy`` on the logits).
        """
        if (idx is None) == (inputs_embeds is None):
            raise ArchlabError("pass exactly one of idx and inputs_embeds")
        x = self.embed(idx) if inputs_embeds is None else inputs_embeds  # (B, T, E)
        x = self.drop(x)
        with _recurrent_precision(x) as fp32:
            if fp32:  # the core runs in fp32: its inputs must be fp32 too
                x = x.float()
                if state is not None:
                    state = (
                        tuple(s.float() for s in state)
                        if isinstance(state, tuple)
                        else state.float()
                    )
            out, new_state = self._recur(x, state, lengths)
        out = self.drop(out)  # (B, T, H)
        if targets is not None:
            h = out.flatten(0, 1)  # (B*T, H)
            loss = linear_cross_entropy(
                h, self.decoder.weight, self.decoder.bias, targets.flatten()
            )
            return (loss, new_state) if return_state else loss
        logits = self.decoder(out)  # (B, T, vocab)
        return (logits, new_state) if return_state else logits

    def _recur(
        self, x: torch.Tensor, state: State | None, lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, State]:
        """The recurrent core: (B, T, E) -> (B, T, H) and the final state."""
        if lengths is None:
            out, new_state = self.rnn(x, state)  # (B, T, H); state (L, B, H) or a pair of them
        else:
            lengths = torch.as_tensor(lengths).cpu()  # pack_padded_sequence wants them on the CPU
            if (
                lengths.shape != (x.size(0),)
                or int(lengths.min()) < 1
                or int(lengths.max()) > x.size(1)
            ):
                raise ArchlabError(
                    f"lengths must be {x.size(0)} values in 1..{x.size(1)}, got {lengths.tolist()}"
                )
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths, batch_first=True, enforce_sorted=False
            )
            out, new_state = self.rnn(packed, state)  # the state stops at each row's length
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return out, new_state

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Extend ``idx`` (B, T>=1) by ``max_new_tokens`` sampled tokens; returns (B, T + new).

        The prompt is fed once; then each new token is fed alone with the carried state, so a step
        costs the same however long the text is (no context window to crop). Runs in eval mode.
        """
        if idx.dim() != 2 or idx.size(1) < 1:
            raise ArchlabError("generate needs a prompt of at least one token, shape (B, T)")
        was_training = self.training
        self.eval()
        logits, state = self(idx, return_state=True)  # (B, T, vocab)
        for i in range(max_new_tokens):
            nxt = sample_next_token(logits[:, -1], temperature, top_k, generator)  # (B, 1)
            idx = torch.cat((idx, nxt), dim=1)  # (B, T+1)
            if i + 1 < max_new_tokens:
                logits, state = self(nxt, state, return_state=True)  # (B, 1, vocab)
        self.train(was_training)
        return idx


@register_model("rnn", TanhRNNConfig, task="lm")
def _build_rnn(cfg: TanhRNNConfig) -> RNNLanguageModel:
    return RNNLanguageModel(cfg)


@register_model("lstm", LSTMConfig, task="lm")
def _build_lstm(cfg: LSTMConfig) -> RNNLanguageModel:
    return RNNLanguageModel(cfg)


@register_model("gru", GRUConfig, task="lm")
def _build_gru(cfg: GRUConfig) -> RNNLanguageModel:
    return RNNLanguageModel(cfg)


# pytorch/examples word_language_model defaults: 2 layers, 200 wide, dropout 0.2 (--tied optional).
register_preset("lstm-wt2", "lstm", layers=2, d_model=200, dropout=0.2)
# A char-level LSTM matched to gpt-nano in parameters (806,585 vs 809,856 at vocab 65).
register_preset("lstm-char", "lstm", layers=2, d_model=220, dropout=0.0, forget_bias=1.0)

__all__ = [
    "GRUConfig",
    "LSTMConfig",
    "RNNLMConfig",
    "RNNLanguageModel",
    "State",
    "TanhRNNConfig",
]
