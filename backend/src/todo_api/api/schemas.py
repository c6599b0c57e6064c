"""Request and response models of the task routes.

Request bodies are validated here. Responses are built by Postgres (see services/task_service.py);
`Task` documents their exact shape in the OpenAPI schema.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    WithJsonSchema,
)

TITLE_MAX = 200
DESCRIPTION_MAX = 1000
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _no_nul(text: str) -> str:
    # Postgres text cannot hold NUL; refuse it as a validation error, not a database error.
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


def _trimmed_title(text: str) -> str:
    text = text.strip()
    if not 1 <= len(text) <= TITLE_MAX:
        raise ValueError(f"must be 1 to {TITLE_MAX} characters after trimming whitespace")
    return _no_nul(text)


def _iso_date(value: object) -> object:
    # Only "YYYY-MM-DD" (or null): no timestamps, no numbers read as Unix time.
    if value is None or isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be a date in the form YYYY-MM-DD")
    return date.fromisoformat(value)


# What the schema documents is exactly what is accepted (contract tests generate from it): some
# non-whitespace, no NUL anywhere.
NO_NUL_PATTERN = r"^[^\u0000]*$"
TITLE_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": TITLE_MAX,
    "pattern": r"^[^\u0000]*\S[^\u0000]*$",
    "description": f"Trimmed; 1 to {TITLE_MAX} characters remain.",
}

Title = Annotated[StrictStr, AfterValidator(_trimmed_title), WithJsonSchema(TITLE_SCHEMA)]
Description = Annotated[
    StrictStr, Field(max_length=DESCRIPTION_MAX, pattern=NO_NUL_PATTERN), AfterValidator(_no_nul)
]
DueDate = Annotated[date, BeforeValidator(_iso_date)]


def _never_null(message: str) -> BeforeValidator:
    """For fields a body may omit but not send as null (an omitted field keeps its default)."""

    def refuse_null(value: object) -> object:
        if value is None:
            raise ValueError(message)
        return value

    return BeforeValidator(refuse_null)


OptionalTitle = Annotated[
    Title | None,
    _never_null("must be a string; a task always has a title"),
    WithJsonSchema(TITLE_SCHEMA),
]
OptionalCompleted = Annotated[
    StrictBool | None, _never_null("must be true or false"), WithJsonSchema({"type": "boolean"})
]


class _Body(BaseModel):
    # Unknown and server-controlled fields (id, user_id, created_at, updated_at) are ignored.
    model_config = ConfigDict(extra="ignore")


class TaskCreate(_Body):
    title: Title
    description: Description | None = None
    completed: StrictBool = False
    due_date: DueDate | None = None


class _OptionalFields(_Body):
    """Fields PUT and PATCH may omit (kept) or send; null clears description and due_date."""

    description: Description | None = None
    completed: OptionalCompleted = None
    due_date: DueDate | None = None


class TaskUpdate(_OptionalFields):
    """PUT: `title` required; omitted fields keep their values."""

    title: Title


class TaskPatch(_OptionalFields):
    """PATCH: any subset of the fields."""

    title: OptionalTitle = None


class TaskToggle(_Body):
    """Toggle body: `{"completed": bool}` sets the value; no body (or `{}`) flips it."""

    completed: OptionalCompleted = None


class Task(BaseModel):
    """A task as the API returns it."""

    id: int = Field(examples=[1])
    user_id: str
    title: str = Field(max_length=TITLE_MAX)
    description: str | None = Field(max_length=DESCRIPTION_MAX)
    completed: bool
    due_date: date | None
    created_at: datetime = Field(examples=["2026-11-26T10:00:00.123456Z"])
    updated_at: datetime = Field(examples=["2026-11-26T10:00:00.123456Z"])
