"""Fixtures shared across test suites; model builders live in ``tests/_models.py``."""

from __future__ import annotations

import os

import pytest

# pytest-xdist's workers start with COLUMNS=80 and LINES=24; Rich fixes a console's width from
# COLUMNS when the console is made (at import), so tests that widen the CLI's tables with
# COLUMNS would see 80 forever. Without it, every console reads COLUMNS when it prints.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

from _models import add_vectors_onnx, identity_all_types_onnx, train_classifier_onnx


@pytest.fixture(scope="session")
def classifier_onnx() -> bytes:
    """A tree classifier: input "input" FP32 [-1, 4] -> "label" INT64, "probabilities" FP32."""
    return train_classifier_onnx()


@pytest.fixture(scope="session")
def identity_onnx() -> bytes:
    """Identity for every v2 datatype ("in_<DT>" -> "out_<DT>", [-1, 2]) and "fixed" [2, 3]."""
    return identity_all_types_onnx()


@pytest.fixture(scope="session")
def add_onnx() -> bytes:
    """ "sum" = "a" + "b" (FP32 [-1] each): mismatched lengths fail inside ONNX Runtime."""
    return add_vectors_onnx()
