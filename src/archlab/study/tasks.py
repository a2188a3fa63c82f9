"""Synthetic probe tasks of the study, as batch samplers for
:class:`~archlab.study.training.StreamTask`.

* :class:`Recall` (T1, R3): associative recall at a distance. Key-value pairs scattered through
  noise; at the end a query asks for one key's value, which came ``d`` tokens earlier. Attention
  can find it by content at any distance; a recurrent net must carry every binding in its state.
* :class:`TwoMarks` (C4): two small binary marks on a blank canvas, ``d`` px apart; is it the
  same mark twice? A same/different relation between two regions (Kim, Ricci & Serre 2018).
  A conv net whose units never see both marks and that pools globally then classifies linearly
  cannot solve it: with f = φ(A) + φ(B) pooled, a linear rule u(A) + u(B) > 0 iff A = B would
  need 2u(A) > 0 for every A and u(A) + u(B) < 0 for every A ≠ B, a contradiction.

Every draw is a pure function of the generator, so a batch is a function of (seed, step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from archlab.models.gpt import GPT

__all__ = ["Recall", "TwoMarks"]


@dataclass(frozen=True)
class Recall:
    """Associative recall at a distance: ``pairs`` (key, value) bindings are scattered through
    noise, the sequence ends with a query token and one of the keys, and the model must predict
    that key's value. The queried pair's value sits ``d`` positions before the end; the other
    pairs are distractors at random earlier positions. A recurrent net must hold every binding
    in its state across the noise (it cannot know which will be asked); attention can look the
    key up by content at any distance (Zoology, Arora et al. 2023, "multi-query associative
    recall"; with ``pairs=1`` it is Hochreiter & Schmidhuber 1997's noisy-sequence memory task).
    """

    noise: int = 16  # noise tokens 0..noise-1
    values: int = 8  # value tokens; chance = 1/values
    keys: int = 8  # key tokens (>= pairs)
    pairs: int = 4  # bindings per sequence (1 queried, pairs - 1 distractors)
    prefix: int = 4  # noise tokens before the first pair can start

    @property
    def vocab(self) -> int:
        return self.noise + self.values + self.keys + 1  # + the query token

    @property
    def query(self) -> int:
        return self.noise + self.values + self.keys

    def length(self, d: int) -> int:
        """Tokens in a sequence whose queried value is ``d`` positions before the end."""
        return self.prefix + 2 * self.pairs + d + 1

    def batch(self, n: int, d: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(x (n, L) token ids, y (n,) the queried value in 0..values-1) at distance ``d`` >= 2."""
        L = self.length(d)
        x = torch.randint(self.noise, (n, L), generator=gen)  # (n, L) noise
        keys = torch.argsort(torch.rand(n, self.keys, generator=gen), dim=1)[:, : self.pairs]
        vals = torch.randint(self.values, (n, self.pairs), generator=gen)  # (n, pairs)
        rows = torch.arange(n)
        vq = L - 1 - d  # the queried value's position; its key just before it
        x[rows, vq - 1] = self.noise + self.values + keys[:, 0]
        x[rows, vq] = self.noise + vals[:, 0]
        # distractor pairs: distinct slots of two tokens in [prefix, L - 2), away from the query
        free = [p for p in range(self.prefix, L - 3, 2) if p + 1 < vq - 1 or p > vq]
        for i in range(1, self.pairs):
            slot = torch.randint(len(free), (n,), generator=gen)
            pos = torch.tensor(free)[slot]
            for _ in range(self.pairs):  # a slot another distractor took: step to the next one
                clash = x[rows, pos] >= self.noise
                if not bool(clash.any()):
                    break
                slot = torch.where(clash, (slot + 1) % len(free), slot)
                pos = torch.tensor(free)[slot]
            x[rows, pos] = self.noise + self.values + keys[:, i]
            x[rows, pos + 1] = self.noise + vals[:, i]
        x[:, -2] = self.query
        x[:, -1] = self.noise + self.values + keys[:, 0]
        return x, vals[:, 0]

    def logits(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The model's next-token logits after the queried key, over the value tokens.

        Only the last position is scored, so a GPT runs its final block for that position alone
        (``GPT.forward(last_only=True)``, exact): at 525 tokens that halves its attention work.
        """
        out = model(x, last_only=True) if isinstance(model, GPT) else model(x)  # (B, T|1, V)
        return out[:, -1, self.noise : self.noise + self.values]

    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
        return F.cross_entropy(self.logits(model, x), y), x.size(0)

    @torch.no_grad()
    def accuracy(self, model: torch.nn.Module, d: int, n: int, seed: int, batch: int = 256):
        """Recall accuracy over ``n`` fresh sequences at distance ``d`` (eval mode)."""
        model.eval()
        gen = torch.Generator().manual_seed(seed)
        hits = 0
        dev = next(model.parameters()).device
        for i in range(0, n, batch):
            x, y = self.batch(min(batch, n - i), d, gen)
            hits += int((self.logits(model, x.to(dev)).argmax(-1).cpu() == y).sum())
        return hits / n


@dataclass(frozen=True)
class TwoMarks:
    size: int = 32  # canvas side (px)
    mark: int = 4  # mark side (px)
    shapes: int = 4  # distinct marks
    noise: float = 0.05  # pixel noise std
    seed: int = 1234  # the marks: one fixed task whatever the training seed

    def marks(self) -> torch.Tensor:
        """``shapes`` distinct random binary marks with 5..11 of 16 pixels on: (k, m, m)."""
        gen = torch.Generator().manual_seed(self.seed)
        m, out = self.mark, []
        while len(out) < self.shapes:
            s = (torch.rand(m, m, generator=gen) < 0.5).float()
            if m * m // 3 <= s.sum() <= 2 * m * m // 3 and not any(torch.equal(s, t) for t in out):
                out.append(s)
        return torch.stack(out)

    def span(self, d: int) -> int:
        """Pixels from the first mark's outer edge to the second's: what one unit must see."""
        return d + self.mark

    def batch(
        self, n: int, distances: list[int], gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images (n, 1, size, size), label 1 = same mark twice, and each image's distance.

        The second mark starts ``d`` px after the first (left edges), horizontally or
        vertically; the pair's position is uniform over the canvas."""
        shapes, m, size = self.marks(), self.mark, self.size
        k = shapes.shape[0]
        d = torch.tensor(distances)[torch.randint(len(distances), (n,), generator=gen)]
        same = torch.rand(n, generator=gen) < 0.5
        a = torch.randint(k, (n,), generator=gen)
        b = torch.where(same, a, (a + torch.randint(1, k, (n,), generator=gen)) % k)
        vertical = torch.rand(n, generator=gen) < 0.5
        x = torch.zeros(n, 1, size, size)
        for i in range(n):
            di = int(d[i])
            along = int(torch.randint(0, size - m - di + 1, (1,), generator=gen))
            across = int(torch.randint(0, size - m + 1, (1,), generator=gen))
            r1, c1, r2, c2 = (
                (along, across, along + di, across)
                if vertical[i]
                else (across, along, across, along + di)
            )
            x[i, 0, r1 : r1 + m, c1 : c1 + m] = shapes[a[i]]
            x[i, 0, r2 : r2 + m, c2 : c2 + m] = shapes[b[i]]
        x += self.noise * torch.randn(x.shape, generator=gen)
        return x, same.long(), d
