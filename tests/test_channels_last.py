"""Conv nets train in channels_last on the CPU; a killed and resumed run stays bit-identical."""

from __future__ import annotations

import copy

import pytest
import torch

from archlab.models import create_model
from archlab.train.checkpoint import load_training_state, save_checkpoint
from archlab.train.tasks import ClassificationTask
from archlab.train.trainer import Callback, TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, 1 thread


META = {"task": "image", "model": {"name": "cnn"}}


def _setup(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (96, 1, 12, 12), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 3, (96,), generator=g)
    torch.manual_seed(seed)
    model = create_model("cnn", image_size=12, num_classes=3, channels=(4, 8))
    task = ClassificationTask(
        (x, y), (x[:32], y[:32]), batch_size=16, seed=seed, mean=[0.5], std=[0.25]
    )
    return model, task


class _Die(Callback):
    def on_step_end(self, trainer, logs) -> None:
        if trainer.step == 5:
            raise KeyboardInterrupt


class _Layout(Callback):
    def on_step_end(self, trainer, logs) -> None:
        conv = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        self.seen = conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_trainer_trains_in_channels_last_and_gives_the_layout_back():
    """channels_last inside fit() (C_in > 1, so it differs from contiguous); afterwards every
    parameter has its caller's strides again, and is the same Parameter object."""
    model, task = _setup()
    params = dict(model.named_parameters())
    strides = {n: p.stride() for n, p in params.items()}
    layout = _Layout()
    Trainer(model, task, TrainConfig(max_steps=2, progress=False), callbacks=[layout]).fit()
    assert layout.seen
    for n, p in model.named_parameters():
        assert p is params[n] and p.stride() == strides[n], n
    conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert conv.weight.is_contiguous()


@pytest.mark.parametrize("opt", ["adamw", "muon"])
def test_cnn_killed_and_resumed_is_bit_identical(opt, tmp_path):
    """Muon: its momentum of each channels_last kernel round-trips the file too."""
    cfg = TrainConfig(
        optimizer=opt,
        max_steps=9,
        lr=3e-3,
        warmup_steps=2,
        checkpoint_interval=3,
        log_interval=1,
        progress=False,
    )
    m1, t1 = _setup()
    Trainer(m1, t1, cfg, run_dir=tmp_path / "a", run_meta=META).fit()
    m2, t2 = _setup()
    with pytest.raises(KeyboardInterrupt):
        Trainer(m2, t2, cfg, run_dir=tmp_path / "b", run_meta=META, callbacks=[_Die()]).fit()
    m3, t3 = _setup()
    tr = Trainer(m3, t3, cfg, run_dir=tmp_path / "b", run_meta=META)
    assert tr.restore() and tr.step == 3
    tr.fit()
    for (n, a), b in zip(m1.state_dict().items(), m3.state_dict().values(), strict=True):
        assert torch.equal(a, b), n


def test_restored_adam_moments_take_the_parameter_layout(tmp_path):
    """Files hold contiguous moments; fused AdamW on a channels_last parameter with contiguous
    moments makes a wrong update, so restore must give them the parameter's layout."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(6, 4, 3, 3).contiguous(memory_format=torch.channels_last))
    model = torch.nn.Module()
    model.w = p
    opt = torch.optim.AdamW([p], lr=0.1, fused=True)
    p.grad = torch.randn_like(p)
    opt.step()
    save_checkpoint(tmp_path, model=model, optimizer=opt, config={"step": 1, **META})
    ref_p, ref_opt = copy.deepcopy(p), None
    ref_opt = torch.optim.AdamW([ref_p], lr=0.1, fused=True)
    ref_opt.load_state_dict(opt.state_dict())
    q = torch.nn.Parameter(torch.zeros_like(p))
    model.w = q
    opt2 = torch.optim.AdamW([q], lr=0.1, fused=True)
    load_training_state(tmp_path, model, opt2)
    assert opt2.state[q]["exp_avg"].stride() == q.stride()
    g = torch.randn_like(p)
    ref_p.grad, q.grad = g.clone(), g.clone()
    ref_opt.step()
    opt2.step()
    assert torch.equal(q, ref_p)
