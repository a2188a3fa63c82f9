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
