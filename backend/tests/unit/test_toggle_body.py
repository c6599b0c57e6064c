"""The toggle body's default (no body: flip) is shared, never copied, and cannot be changed."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from todo_api.api.schemas import TaskToggle
from todo_api.api.tasks import FLIP


def test_the_default_is_its_own_copy() -> None:
    assert copy.deepcopy(FLIP) is FLIP
    assert FLIP.completed is None


def test_a_toggle_body_cannot_be_changed_once_made() -> None:
    body = TaskToggle.model_validate({"completed": True})
    with pytest.raises(ValidationError):
        body.completed = False  # type: ignore[misc]
    assert body.completed is True
