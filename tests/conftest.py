"""Shared fixtures: the built-in avatar and its face model, loaded once per test session."""
from __future__ import annotations

import pytest

from engine.avatar.bundle import load
from engine.face.model import FaceModel


@pytest.fixture(scope="session")
def avatar():
    return load("default")


@pytest.fixture(scope="session")
def face_model(avatar):
    return FaceModel(avatar.identity)
