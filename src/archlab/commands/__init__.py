"""CLI command groups; each module exposes ``register(subparsers)``. See ``archlab.cli``."""
