"""The lab's models: trained run directories from ``archlab train``, loaded once and named.

A :class:`LabModel` is a loaded :class:`~archlab.train.inference.Run` plus the name the page and
the JSON API call it (the run directory's name, made unique) and its *family*, which decides what
the lab can show about it: attention weights for a GPT or a ViT, gradient saliency for any
language model, feature maps for a CNN.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archlab.errors import ArchlabError
from archlab.train.inference import Run, load_run

__all__ = ["LabModel", "load_models"]


@dataclass(frozen=True)
class LabModel:
    name: str  # unique among the loaded models; the key of every API answer
    run: Run

    @property
    def kind(self) -> str:
        """``lm`` or ``image`` (the run's task)."""
        return self.run.task

    @property
    def arch(self) -> str:
        """The registered model name the run was built from (``lstm``, ``gpt-nano``, ``vit``...)."""
        return str(self.run.config["model"]["name"])

    @property
    def family(self) -> str:
        """``gpt``, ``rnn`` (tanh RNN, LSTM and GRU), ``cnn``, ``vit`` or ``other``, by class."""
        from archlab.models.cnn import CNN
        from archlab.models.gpt import GPT
        from archlab.models.rnn import RNNLanguageModel
        from archlab.models.vit import ViT

        for cls, fam in ((GPT, "gpt"), (RNNLanguageModel, "rnn"), (CNN, "cnn"), (ViT, "vit")):
            if isinstance(self.run.model, cls):
                return fam
        return "other"

    @property
    def params(self) -> int:
        """Parameters, each tensor once (tied embeddings are one tensor: ``parameters()``)."""
        return sum(p.numel() for p in self.run.model.parameters())

    def describe(self) -> dict[str, Any]:
        """The ``GET /api/models`` entry."""
        return {"name": self.name, "kind": self.kind, "arch": self.arch, "params": self.params}


def load_models(run_dirs: Sequence[str | os.PathLike]) -> list[LabModel]:
    """Load each run directory (CPU, eval mode); names are directory names, ``-2``... on a clash."""
    models: list[LabModel] = []
    taken: set[str] = set()
    for d in run_dirs:
        p = Path(d)
        if not p.is_dir():
            raise ArchlabError(f"{p} is not a directory; pass run directories from archlab train")
        run = load_run(p)
        run.model.eval()
        name, i = p.resolve().name, 1
        while name in taken:
            i += 1
            name = f"{p.resolve().name}-{i}"
        taken.add(name)
        models.append(LabModel(name, run))
    return models
