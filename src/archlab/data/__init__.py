"""archlab.data: text corpora, tokenizers, LM batching and image datasets.

Data is searched in ``$ARCHLAB_DATA``, then ``~/.cache/archlab`` (and, for Fashion-MNIST, Debian's
``/usr/share/datasets/fashion-mnist``); missing named datasets are downloaded with checksum
verification (see :mod:`archlab.data.paths` and :mod:`archlab.data.download`).

Text::

    corpus, notice = resolve_corpus("tinyshakespeare")      # Corpus(train/val/test strings)
    tok = fit_tokenizer("char", corpus)                       # char | word | bpe
    streams = encode_corpus(corpus, tok)                      # int64 tensors per split
    x, y = streams.get_batch("train", 12, 64, generator)      # (B, T) random windows

Images::

    ds = load_image_dataset("fashion-mnist", val_size=5000, train_size=None)
    for x, y in ds.batches("train", 128, shuffle=True, augment=True, generator=g): ...
"""

from archlab.data.batching import (
    IGNORE_INDEX,
    TokenStreams,
    batchify,
    bptt_batches,
    encode_corpus,
    get_batch,
    sliding_window_eval,
    stream_eval_batches,
)
from archlab.data.download import ensure_dataset
from archlab.data.image_formats import load_image_file
from archlab.data.images import (
    FASHION_MNIST_CLASSES,
    IMAGE_DATASETS,
    SPLIT_SEED,
    ImageDataset,
    Normalization,
    augment_batch,
    load_image_dataset,
)
from archlab.data.paths import data_roots, describe_sources, download_root
from archlab.data.text import CORPORA, Corpus, load_corpus, resolve_corpus
from archlab.data.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    WordTokenizer,
    build_tokenizer,
    fit_tokenizer,
    load_tokenizer,
)

__all__ = [
    "CORPORA",
    "FASHION_MNIST_CLASSES",
    "IGNORE_INDEX",
    "IMAGE_DATASETS",
    "SPLIT_SEED",
    "BPETokenizer",
    "CharTokenizer",
    "Corpus",
    "ImageDataset",
    "Normalization",
    "TokenStreams",
    "Tokenizer",
    "WordTokenizer",
    "augment_batch",
    "batchify",
    "bptt_batches",
    "build_tokenizer",
    "data_roots",
    "describe_sources",
    "download_root",
    "encode_corpus",
    "ensure_dataset",
    "fit_tokenizer",
    "get_batch",
    "load_corpus",
    "load_image_dataset",
    "load_image_file",
    "load_tokenizer",
    "resolve_corpus",
    "sliding_window_eval",
    "stream_eval_batches",
]
