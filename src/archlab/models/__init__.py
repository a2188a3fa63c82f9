"""Reference models (one architecture per file) and the registry that builds them by name."""

from archlab.models.checkpoint_io import load_model as load  # load(RUN_DIR): a trained model
from archlab.models.registry import (
    create_model,
    get_spec,
    list_models,
    make_config,
    register_model,
    register_preset,
)

# Architecture modules register themselves on import; add each new file here.
_ARCH_MODULES: tuple[str, ...] = ("rnn", "gpt", "cnn", "resnet", "vit", "mlp")

for _m in _ARCH_MODULES:
    __import__(f"archlab.models.{_m}")

__all__ = [
    "create_model",
    "load",
    "get_spec",
    "list_models",
    "make_config",
    "register_model",
    "register_preset",
]
