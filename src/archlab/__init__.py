"""archlab: Transformers, RNNs and CNNs compared with exact costs and measured experiments."""

__version__ = "0.1.0"

__all__ = ["__version__"]
