"""Knowledge distillation for image classifiers: a trained run teaches a new one.

Why it is here: Part 2 of the seed says a ViT lacks the CNN's inductive biases (locality, weight
sharing) and needs more data to make up for them. DeiT (Touvron et al. 2021, "Training
data-efficient image transformers & distillation through attention", §5) showed the other way out:
a CNN teacher hands its biases to the Transformer through its predictions, and a ViT trained on
ImageNet alone then beats one trained without the teacher. ``archlab train image --teacher RUN_DIR``
does that with any trained image run as the teacher.

Two losses (``mode``), both mixed with the ordinary (optionally label-smoothed) cross-entropy on the
true label y with weight 1 - alpha:

* ``hard`` (DeiT eq. "hard-label distillation"): alpha x CE(student, argmax teacher). DeiT found it
  better than soft distillation for a CNN teacher (Table 3); alpha = 1/2 is DeiT's.
* ``soft`` (Hinton, Vinyals & Dean 2015, §2): alpha x tau^2 x KL(softmax(t / tau) || softmax(s /
  tau)); the tau^2 keeps the gradient's scale independent of the temperature (Hinton §2).

The teacher labels each training image once, un-augmented, before training (one forward pass over
the training split: 11-12 s for 55,000 Fashion-MNIST images and the 288k-parameter 32-64-128 CNN
on 2 cores in bf16), not each augmented view on the fly as DeiT does: on the fly the same CNN
costs +31% per ViT step here (19 ms per batch of 128 against a ~60 ms step), and a crop of a few
pixels or a flip does not change what the teacher sees in a 28 px garment. The labels are a
function of the teacher's weights and the data alone, so a resumed run recomputes the same ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from archlab.errors import ArchlabError

MODES = ("hard", "soft")


@dataclass(frozen=True)
class Distillation:
    """Teacher logits for every training image (N, K) and how to use them."""

    logits: torch.Tensor  # (N_train, classes) fp32, row i = training image i, un-augmented
    mode: str = "hard"
    alpha: float = 0.5  # weight of the teacher term; 1 - alpha on the true labels
    tau: float = 1.0  # soft mode's temperature

    def __post_init__(self) -> None:
        check_distill_args(self.mode, self.alpha, self.tau)


def check_distill_args(mode: str, alpha: float, tau: float) -> None:
    if mode not in MODES:
        raise ArchlabError(f"distill must be one of {MODES}, got {mode!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ArchlabError(f"distill alpha must be in [0, 1], got {alpha}")
    if not tau > 0:
        raise ArchlabError(f"distill tau (temperature) must be > 0, got {tau}")


def distillation_loss(
    student: torch.Tensor,
    labels: torch.Tensor,
    teacher: torch.Tensor,
    d: Distillation,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """(1 - alpha) CE(student, labels) + alpha x the teacher term; logits (B, K), labels (B,)."""
    s = student.float()  # (B, K)
    loss = F.cross_entropy(s, labels, label_smoothing=label_smoothing)
    if d.mode == "hard":
        kd = F.cross_entropy(s, teacher.argmax(dim=-1))  # DeiT: the teacher's decision as label
    else:
        log_p_s = F.log_softmax(s / d.tau, dim=-1)  # (B, K)
        log_p_t = F.log_softmax(teacher.float() / d.tau, dim=-1)  # (B, K)
        kd = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * d.tau**2
    return (1 - d.alpha) * loss + d.alpha * kd


def check_teacher(run_dir: str | Path) -> None:
    """A one-line error unless ``run_dir`` holds a trained image run (cheap: reads its JSON)."""
    from archlab.train.checkpoint import read_run_config

    try:
        task = read_run_config(run_dir)["task"]
    except ArchlabError as e:
        raise ArchlabError(f"teacher: {e}") from None
    if task != "image":
        raise ArchlabError(f"teacher {run_dir} is a {task} run; distillation needs an image run")


def teacher_logits(
    run_dir: str | Path, ds, precision: str = "fp32", batch_size: int = 500
) -> tuple[torch.Tensor, dict]:
    """Logits (N_train, K) of the image run in ``run_dir`` on ``ds``'s training split, and a record.

    The teacher must have been trained on the same dataset with the same validation split, so the
    student's validation images were never its training images (else the teacher would leak them).
    """
    from archlab.train.inference import load_run
    from archlab.train.tasks import classify_batches

    p = Path(run_dir)
    check_teacher(p)
    try:
        run = load_run(p)
    except ArchlabError as e:
        raise ArchlabError(f"teacher: {e}") from None
    t_data, mine = run.config.get("data", {}), ds.describe()
    for key in ("name", "shape", "class_names", "val"):
        if t_data.get(key) != mine[key]:
            raise ArchlabError(
                f"teacher {p} was trained with data {key}={t_data.get(key)!r}, this run has "
                f"{mine[key]!r}: a teacher must share the dataset and its validation split"
            )
    norm = t_data["normalization"]
    x, _ = ds.split("train")
    t0 = time.perf_counter()
    amp = torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16")
    with amp:
        logits = classify_batches(run.model.eval(), x, norm["mean"], norm["std"], batch_size)
    record = {
        "run_dir": str(p),
        "arch": run.config["model"]["name"],
        "images": int(x.size(0)),
        "labelling_s": round(time.perf_counter() - t0, 2),
    }
    return logits.float(), record


__all__ = [
    "MODES",
    "Distillation",
    "check_distill_args",
    "check_teacher",
    "distillation_loss",
    "teacher_logits",
]
