"""One module per claim of the seed. Importing this package registers them all, in this order.

To add a claim (e.g. Part 2's C1..V4): write ``claims/<id>_<name>.py`` that builds a
:class:`archlab.study.claim.Claim` and calls ``register_claim(claim, __name__)``, then add the
module name below. Nothing else changes: the runner, cache, CLI and report pick it up.
"""

from importlib import import_module

CLAIM_MODULES = (
    "t1_long_range",
    "t2_parallel_training",
    "t3_quadratic_attention",
    "r1_variable_length",
    "r2_memory",
    "r3_vanishing_gradients",
    # Part 2 (issue 6). V3 is v3_quadratic_patches (fused and materialized attention, fits on both
    # sides of n*); the framework's plug-ins v3_patch_attention / v4_parallel_images measured
    # the same claims (V4 here: images/s at matched FLOPs, training and inference).
    "c1_hierarchical_features",
    "c2_parameter_efficiency",
    "c3_translation_invariance",
    "c4_global_context",
    "v1_global_view",
    "v2_data_efficiency",
    "v3_quadratic_patches",
    "v4_parallel_processing",
    "p3_rnn_params",
    "p4_conv_params",
    "p5_transformer_complexity",
)

for _name in CLAIM_MODULES:
    import_module(f"{__name__}.{_name}")

__all__ = ["CLAIM_MODULES"]
