"""Text to the paper's multi-hot input: the project's one tokenizer.

The same code runs on the workstation (building the vocabulary from the train
split, encoding the training data) and on the device (classifying raw text),
so both give identical vectors by construction; a test checks it on real data.

Rules of tokenizer ``edge-rbmlp-words`` version 1:

1. Unicode NFKC normalization, then lower case;
2. HTML tags such as ``<br />`` become spaces;
3. tokens are maximal runs of letters and digits, with inner apostrophes kept
   (``don't`` is one token, ``'quoted'`` gives ``quoted``).

The vocabulary is the ``size`` words found in most training documents (ties by
word, ascending); word ``i`` of the vocabulary is input ``i`` of the model.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Dict, Iterable, List, Sequence

import numpy as np

TOKENIZER_NAME = "edge-rbmlp-words"
TOKENIZER_VERSION = 1
TOKEN_PATTERN = r"[^\W_]+(?:'[^\W_]+)*"
TOKENIZER = {"name": TOKENIZER_NAME, "version": TOKENIZER_VERSION, "lowercase": True,
             "normalize": "NFKC", "strip_html": True, "pattern": TOKEN_PATTERN}

_HTML_TAG = re.compile(r"<[^<>]{0,200}>")
_TOKEN = re.compile(TOKEN_PATTERN)
MAX_TEXT_CHARS = 1_000_000


class TextError(ValueError):
    pass


def as_text(value) -> str:
    """Accept ``str`` or UTF-8 ``bytes``; anything else is a clear error."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TextError(f"text is not valid UTF-8 (byte {exc.start})") from None
    if not isinstance(value, str):
        raise TextError(f"text must be a string, got {type(value).__name__}")
    return value


def tokenize(text) -> List[str]:
    text = as_text(text)
    if len(text) > MAX_TEXT_CHARS:
        raise TextError(f"text is {len(text)} characters, more than the {MAX_TEXT_CHARS} limit")
    text = unicodedata.normalize("NFKC", text).lower()
    text = _HTML_TAG.sub(" ", text)
    return _TOKEN.findall(text)


def build_vocabulary(texts: Iterable[str], size: int) -> List[str]:
    """The ``size`` words that occur in most documents (ties broken by the word)."""
    doc_freq: Counter = Counter()
    for text in texts:
        doc_freq.update(set(tokenize(text)))
    ranked = sorted(doc_freq.items(), key=lambda kv: (-kv[1], kv[0]))
    return [word for word, _ in ranked[:size]]


class TextEncoder:
    """Maps text to active word indices or a multi-hot ``uint8`` vector."""

    def __init__(self, vocab: Sequence[str]):
        self.vocab = list(vocab)
        self.index: Dict[str, int] = {w: i for i, w in enumerate(self.vocab)}
        if len(self.index) != len(self.vocab):
            raise TextError("vocabulary words must be unique")

    @classmethod
    def for_model(cls, model) -> "TextEncoder":
        spec = model.input_spec
        tok = spec.tokenizer or {}
        if tok.get("name") != TOKENIZER_NAME or tok.get("version") != TOKENIZER_VERSION:
            raise TextError(f"model uses tokenizer {tok.get('name')!r} v{tok.get('version')!r}; this "
                            f"edge-rbmlp knows {TOKENIZER_NAME!r} v{TOKENIZER_VERSION}")
        return cls(model.vocab)

    @property
    def size(self) -> int:
        return len(self.vocab)

    def indices(self, text) -> np.ndarray:
        """Sorted unique indices of the vocabulary words in ``text`` (int32)."""
        idx = {self.index[w] for w in tokenize(text) if w in self.index}
        return np.array(sorted(idx), dtype=np.int32)

    def multi_hot(self, text) -> np.ndarray:
        out = np.zeros(self.size, dtype=np.uint8)
        out[self.indices(text)] = 1
        return out

    def multi_hot_batch(self, texts: Iterable[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.size), dtype=np.uint8)
        for row, text in enumerate(texts):
            out[row, self.indices(text)] = 1
        return out
