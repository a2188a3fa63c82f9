"""What an experiment sees: its sizes, seeds, device, data, progress bars and its dependencies."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


@dataclass
class StudyContext:
    claim_id: str
    profile: str
    seeds: list[int]
    sizes: Mapping[str, Any]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    show_progress: bool = True
    # Metrics of the claims listed in Claim.requires (filled by the runner before run()).
    deps: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    runs_dir: Path | None = None  # where trained models are kept (None: not kept)
    offline: bool = False  # never try to fetch the full datasets

    def progress(self, iterable: Iterable | None = None, total: int | None = None, desc: str = ""):
        """A tqdm bar on stderr (one per experiment); silent when progress is off (tests)."""
        from tqdm.auto import tqdm

        return tqdm(
            iterable,
            total=total,
            desc=f"{self.claim_id} {desc}".strip(),
            disable=not self.show_progress,
            leave=False,
            dynamic_ncols=True,
        )

    def result_of(self, claim_id: str) -> Mapping[str, Any]:
        if claim_id not in self.deps:
            raise KeyError(f"{self.claim_id} reads {claim_id} but does not list it in requires")
        return self.deps[claim_id]

    def images(self):
        """The study's images for this profile (archlab.study.data.load_images)."""
        from archlab.study.data import load_images

        return load_images(self.profile, self.offline)

    def text(self):
        """The study's char-level text (archlab.study.data.load_text)."""
        from archlab.study.data import load_text

        return load_text()


__all__ = ["StudyContext"]
