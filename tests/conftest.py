"""Shared fixtures: small random packed models of the paper's shapes."""

import numpy as np
import pytest

from edge_rbmlp.arch import parse
from edge_rbmlp.random_model import random_packed_model


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def mnist_like_model():
    """A random model of the paper's best 2-layer MNIST variant (Table IV)."""
    return random_packed_model(parse("B-D128N,D88N,PN"), 784, 10, seed=7, input_kind="image")


@pytest.fixture
def imdb_like_model():
    """A random model of the paper's 3-layer IMDB Q variant (Table VII), one sigmoid unit."""
    return random_packed_model(parse("B-D32N,D16N,D8N,Q"), 10000, 1, seed=8, input_kind="text")
