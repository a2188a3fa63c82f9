"""One lab session: the loaded models, the study folder, and the first-start training.

The page and the JSON API read the models through :class:`Lab`; the list is replaced as a whole
when the default models finish training in the background thread, so a request sees either no
models (and the progress) or all of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from archlab.errors import ArchlabError
from archlab.lab.defaults import TRAIN_SECONDS, TrainingProgress, missing_defaults, train_defaults
from archlab.lab.models import LabModel, load_models

__all__ = ["Lab", "NotReady"]

log = logging.getLogger(__name__)


class NotReady(ArchlabError):
    """No model of the kind a request needs is loaded yet (the API answers 503)."""


class Lab:
    def __init__(
        self,
        models: Sequence[LabModel] = (),
        study_dir: Path = Path("archlab-study"),
        progress: TrainingProgress | None = None,
    ) -> None:
        self._models = list(models)
        self.study_dir = Path(study_dir)
        self.progress = progress or TrainingProgress(done=True)
        self._lock = threading.Lock()

    @classmethod
    def from_run_dirs(cls, run_dirs: Sequence[Path], study_dir: Path) -> Lab:
        return cls(load_models(run_dirs), study_dir)

    @classmethod
    def with_defaults(
        cls, root: Path, study_dir: Path, seconds: float = TRAIN_SECONDS, threads: int | None = None
    ) -> tuple[Lab, threading.Thread | None]:
        """The default models under ``root``: loaded now if all exist, else trained in a thread
        (returned, started) while the lab already serves the page and its progress."""
        missing = missing_defaults(root)
        if not missing:
            return cls.from_run_dirs(train_defaults(root, seconds), study_dir), None
        lab = cls(study_dir=study_dir, progress=TrainingProgress(runs=[r.name for r in missing]))

        def work() -> None:
            try:
                dirs = train_defaults(root, seconds, lab.progress, threads=threads)
                lab.set_models(load_models(dirs))
            except Exception as e:  # shown in the page and the terminal; the page stays up
                log.exception("training the default models failed")
                lab.progress.update(error=" ".join(str(e).split()) or type(e).__name__, done=True)

        thread = threading.Thread(target=work, name="archlab-lab-train", daemon=True)
        thread.start()
        return lab, thread

    @property
    def models(self) -> list[LabModel]:
        with self._lock:
            return list(self._models)

    def set_models(self, models: Sequence[LabModel]) -> None:
        with self._lock:
            self._models = list(models)

    @property
    def busy(self) -> bool:
        """True while the default models train, and until they are loaded after that."""
        p = self.progress.snapshot()
        return p["training"] or (bool(p["runs"]) and not p["error"] and not self.models)

    def of_kind(self, kind: str) -> list[LabModel]:
        """The loaded models of ``kind`` (lm | image); NotReady while training, or if none."""
        found = [m for m in self.models if m.kind == kind]
        if not found:
            p = self.progress.snapshot()
            what = {"lm": "language model", "image": "image model"}[kind]
            if self.busy:
                raise NotReady(f"the default models are still training ({p['fraction']:.0%})")
            raise NotReady(f"no {what} is loaded; pass an archlab train run directory")
        return found
