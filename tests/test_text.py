"""The tokenizer and multi-hot encoding shared by the workstation and the device."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_rbmlp.text import MAX_TEXT_CHARS, TextEncoder, TextError, build_vocabulary, tokenize


def test_rules():
    assert tokenize("I didn't like it.<br /><br />The END!") == ["i", "didn't", "like", "it", "the", "end"]
    assert tokenize("'Quoted' words, café and ＦＵＬＬ width") == ["quoted", "words", "café", "and", "full", "width"]
    assert tokenize("snake_case 10/10") == ["snake", "case", "10", "10"]
    assert tokenize("") == []


def test_bytes_must_be_utf8():
    assert tokenize("naïve".encode("utf-8")) == ["naïve"]
    with pytest.raises(TextError, match="UTF-8"):
        tokenize(b"\xff\xfe bad")
    with pytest.raises(TextError):
        tokenize(42)


def test_huge_text_is_refused():
    with pytest.raises(TextError, match="limit"):
        tokenize("a" * (MAX_TEXT_CHARS + 1))


def test_vocabulary_by_document_frequency_then_word():
    docs = ["b a a a", "b c", "b c", "d"]
    assert build_vocabulary(docs, 3) == ["b", "c", "a"]


def test_encoder():
    enc = TextEncoder(["good", "bad", "film"])
    assert enc.indices("Good good FILM, not bad").tolist() == [0, 1, 2]
    np.testing.assert_array_equal(enc.multi_hot("a good film"), [1, 0, 1])
    np.testing.assert_array_equal(enc.multi_hot_batch(["bad", ""]), [[0, 1, 0], [0, 0, 0]])
    with pytest.raises(TextError):
        TextEncoder(["a", "a"])


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_tokenizer_never_fails_on_any_text(text):
    tokens = tokenize(text)
    assert all(t and "\n" not in t and t == t.strip() for t in tokens)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["good", "bad", "film", "plot", "zzz"]), max_size=20))
def test_multi_hot_marks_exactly_the_known_words(words):
    enc = TextEncoder(["good", "bad", "film", "plot"])
    v = enc.multi_hot(" ".join(words))
    assert v.dtype == np.uint8
    assert {enc.vocab[i] for i in np.flatnonzero(v)} == set(words) - {"zzz"}
