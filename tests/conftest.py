"""Shared fixtures: the built-in avatar and its face model, loaded once per test session."""
from __future__ import annotations

import pytest
import torch

from engine.avatar.bundle import load
from engine.face.model import FaceModel


@pytest.fixture(scope="session")
def avatar():
    return load("default")


@pytest.fixture(scope="session")
def face_model(avatar):
    return FaceModel(avatar.identity)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models and many small calls: one thread, so the shared cores are not oversubscribed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
