from dataclasses import dataclass

import pytest
from torch import nn

from archlab.errors import ArchlabError
from archlab.models import registry


def test_bad_command_is_one_line_exit_2(cli):
    r = cli("no-such-command")
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_version(cli):
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("archlab ")


@dataclass
class _Cfg:
    width: int = 4

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")


def test_registry_create_preset_and_errors(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {})
    registry.register_model("toy", _Cfg, task="lm")(lambda c: nn.Linear(c.width, c.width))
    registry.register_preset("toy-wide", "toy", width=8)
    assert registry.create_model("toy").in_features == 4
    assert registry.create_model("toy-wide").in_features == 8
    assert registry.create_model("toy-wide", width=3).in_features == 3
    with pytest.raises(ArchlabError, match="valid names: toy, toy-wide"):
        registry.create_model("nope")
    with pytest.raises(ArchlabError, match="unknown config field"):
        registry.create_model("toy", depth=2)
    with pytest.raises(ValueError, match="width"):
        registry.create_model("toy", width=0)


_TOY_MODULE = """
from dataclasses import dataclass
from torch import nn
from archlab.models.registry import register_model, register_preset

@dataclass
class ToyConfig:
    width: int = 2

class Toy(nn.Linear):
    def __init__(self, cfg):
        super().__init__(cfg.width, cfg.width)

@register_model("reload-toy", ToyConfig, task="lm")
def _build(cfg):
    return Toy(cfg)

register_preset("reload-toy-wide", "reload-toy", width=5)
"""


def test_registry_is_reload_safe_and_still_refuses_clashes(tmp_path, monkeypatch):
    """importlib.reload of an architecture module (a notebook after an edit) re-registers its
    names; the same name registered from another module is still an error."""
    import importlib
    import sys

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    (tmp_path / "reload_toy_arch.py").write_text(_TOY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "reload_toy_arch", raising=False)
    mod = importlib.import_module("reload_toy_arch")
    reloaded = importlib.reload(mod)
    assert registry.get_spec("reload-toy").config_cls is reloaded.ToyConfig
    assert registry.get_spec("reload-toy-wide").config_cls is reloaded.ToyConfig
    assert isinstance(registry.create_model("reload-toy-wide"), reloaded.Toy)
    assert registry.create_model("reload-toy-wide").in_features == 5

    def clash(cfg):  # defined here: its module is this test file, not reload_toy_arch
        return nn.Linear(1, 1)

    with pytest.raises(RuntimeError, match="registered twice"):
        registry.register_model("reload-toy", _Cfg, task="lm")(clash)
    with pytest.raises(RuntimeError, match="registered twice"):
        registry.register_preset("reload-toy-wide", "reload-toy", width=1)
    with pytest.raises(RuntimeError, match="registered twice"):
        registry.register_model("gpt", _Cfg, task="lm")(clash)  # a built-in name
    assert registry.get_spec("reload-toy").config_cls is reloaded.ToyConfig  # nothing replaced
    monkeypatch.delitem(sys.modules, "reload_toy_arch")
