"""Pieces every claim's verdict rule uses: controls, the literature, and status sentences."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archlab.study.claim import Effect, Literature, Verdict

__all__ = [
    "PAPERS",
    "control_check",
    "every_profile",
    "fmt_ci",
    "literature",
    "undertrained",
]

# The papers the verdicts compare with: (reference, what it found).
PAPERS: dict[str, tuple[str, str]] = {
    "keras_pytorch_rnn": (
        "PyTorch nn.RNN and Keras SimpleRNN documentation",
        "nn.RNN holds W_ih, W_hh and two bias vectors (b_ih, b_hh); SimpleRNN one bias: "
        "h·(i + h) + 2h vs h·(i + h) + h parameters",
    ),
    "keras_pytorch_conv": (
        "PyTorch nn.Conv2d and Keras Conv2D documentation",
        "a conv layer holds C_out filters of k·k·C_in weights and one bias per filter",
    ),
    "khandelwal2018": (
        "Khandelwal, He, Qi & Jurafsky 2018, 'Sharp Nearby, Fuzzy Far Away: How Neural Language "
        "Models Use Context' (ACL)",
        "LSTM language models use about 200 tokens of context but only the nearest ~50 in "
        "detail; information far away is kept only fuzzily",
    ),
    "vaswani2017": (
        "Vaswani et al. 2017, 'Attention Is All You Need' (NeurIPS), Table 1",
        "self-attention costs O(n²·d) per layer with O(1) sequential operations; a recurrent "
        "layer O(n·d²) with O(n) sequential operations",
    ),
    "dao2022": (
        "Dao, Fu, Ermon, Rudra & Ré 2022, 'FlashAttention' (NeurIPS)",
        "exact attention still needs O(n²) FLOPs, but a fused, IO-aware kernel needs only O(n) "
        "memory and its speed is set by memory traffic",
    ),
    "press2022": (
        "Press, Smith & Lewis 2022, 'Train Short, Test Long' (ICLR)",
        "Transformers with sinusoidal positions degrade beyond the length they were trained on",
    ),
    "katharopoulos2020": (
        "Katharopoulos, Vyas, Pappas & Fleuret 2020, 'Transformers are RNNs' (ICML)",
        "autoregressive softmax attention keeps an O(n) key/value cache; a recurrent model "
        "generates with O(1) state",
    ),
    "pascanu2013": (
        "Pascanu, Mikolov & Bengio 2013, 'On the difficulty of training recurrent neural "
        "networks' (ICML); Bengio, Simard & Frasconi 1994",
        "gradients through a recurrence shrink (or grow) exponentially with the number of steps; "
        "gating (Hochreiter & Schmidhuber 1997) slows the decay",
    ),
    "alain2016": (
        "Alain & Bengio 2016, 'Understanding intermediate layers using linear classifier probes'; "
        "Zeiler & Fergus 2014",
        "class information becomes more linearly decodable layer by layer, and receptive fields "
        "and feature complexity grow with depth",
    ),
    "lecun1998": (
        "LeCun, Bottou, Bengio & Haffner 1998, 'Gradient-based learning applied to document "
        "recognition'; Xiao, Rasul & Vollgraf 2017 (Fashion-MNIST)",
        "weight sharing and local receptive fields make CNNs more accurate per parameter than "
        "fully connected networks on images",
    ),
    "zhang2019": (
        "Zhang 2019, 'Making Convolutional Networks Shift-Invariant Again' (ICML); Azulay & Weiss "
        "2019",
        "CNNs with pooling and striding are not shift-invariant: small shifts change predictions; "
        "anti-aliased (BlurPool) downsampling makes them markedly more consistent",
    ),
    "kim2018": (
        "Kim, Ricci & Serre 2018, 'Not-So-CLEVR: learning same-different relations strains "
        "feedforward neural networks' (Interface Focus); Luo et al. 2016",
        "CNNs learn same/different relations between distant regions poorly; a unit's effective "
        "receptive field is far smaller than the image",
    ),
    "dosovitskiy2020": (
        "Dosovitskiy et al. 2020, 'An Image is Worth 16x16 Words' (ICLR 2021)",
        "some ViT heads attend across the whole image already in the lowest layers (Fig. 7); "
        "ViTs trail ResNets trained on mid-sized data and overtake them only with 14M-300M "
        "images (Fig. 3); at scale they need less pre-training compute (Table 2)",
    ),
}


def literature(key: str, agrees: bool | None) -> Literature:
    ref, expected = PAPERS[key]
    return Literature(ref, expected, agrees)


def every_profile(sizes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The same sizes for every profile (exact counts do not get better with a bigger budget)."""
    from archlab.study.claim import PROFILES

    return {p: dict(sizes) for p in PROFILES}


def control_check(scores: Mapping[str, float], thresholds: Mapping[str, float]) -> tuple[str, str]:
    """("pass" | "fail", a sentence): every model's score against its stated threshold."""
    failed = [k for k, v in scores.items() if v < thresholds[k]]
    text = ", ".join(f"{k} {v:.3f} (≥ {thresholds[k]:.2f})" for k, v in scores.items())
    return ("fail" if failed else "pass"), text


def undertrained(
    claim: str, control: str, effect: Effect | None, checks: Mapping[str, Any], key: str
) -> Verdict:
    """The verdict for a failed positive control: never a claim about the architecture."""
    return Verdict(
        "inconclusive",
        f"Inconclusive (undertrained): a model failed its positive control, so {claim} cannot be "
        "judged at this budget.",
        f"positive control: {control}.",
        effect,
        {**checks, "positive_control": "fail"},
        literature(key, None),
        why_inconclusive="undertrained",
    )


def fmt_ci(e: Effect, digits: int = 3) -> str:
    lo, hi = e.ci95
    how = f", {e.method}" if e.method else ""
    return f"{e.value:+.{digits}f} (95% CI {lo:+.{digits}f} to {hi:+.{digits}f}{how})"
