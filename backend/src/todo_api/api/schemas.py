"""Request and response models of the task routes.

Request bodies are validated here. Responses are built by Postgres (see services/task_service.py);
`Task` documents their exact shape in the OpenAPI schema.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Self

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

from todo_api.api.openapi import without_default

TITLE_MAX = 200
DESCRIPTION_MAX = 1000
# Only "YYYY-MM-DD" in ASCII digits (re's \d would also match other scripts' digits).
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# What a title is trimmed of: Unicode's White_Space property, all 25 code points. The database
# trims the same set (tasks_title_trimmed, sql/0004_title_trimmed_portable.sql), and
# tests/db/test_validation_agrees_with_database.py compares the two over every code point.
# Not str.strip()'s set: Python also counts U+001C-U+001F (control separators) as whitespace,
# which Unicode does not; a title keeps those, as the database would.
TITLE_WHITESPACE = (
    "\t\n\v\f\r \u0085\u00a0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def _storable(text: str) -> str:
    """Refuse what PostgreSQL text cannot hold, as a validation error, not a database error."""
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    # A lone surrogate (JSON "\ud800") is no character: it has no UTF-8 encoding to store.
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must not contain lone surrogates (invalid Unicode)") from None
    return text


def _storable_text(value: object) -> object:
    return _storable(value) if isinstance(value, str) else value


def _trimmed_title(text: str) -> str:
    text = _storable(text).strip(TITLE_WHITESPACE)
    if not 1 <= len(text) <= TITLE_MAX:
        raise ValueError(f"must be 1 to {TITLE_MAX} characters after trimming whitespace")
    return text


def _iso_date(value: object) -> object:
    # Only "YYYY-MM-DD" (or null): no timestamps, no numbers read as Unix time, years 0001-9999
    # (all of them finite dates PostgreSQL stores exactly).
    if value is None or isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("must be a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a calendar date between 0001-01-01 and 9999-12-31") from None


# What the schema documents is exactly what is accepted (contract tests generate from it, and
# tests/api/test_schema_constraints.py checks it): no NUL anywhere.
NO_NUL_PATTERN = r"^[^\u0000]*$"
_WS = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# The title's limit is on the trimmed value (SPEC: 1-200 characters after trimming), which
# maxLength cannot say: a 200-character title pasted with a trailing newline is valid. So the
# schema has no maxLength; the pattern states the rule exactly (optional whitespace, then 1 to
# 200 characters that start and end with non-whitespace, then optional whitespace), so a client
# validating against it agrees with the server on every string, and the description says it in
# words for people.
TITLE_PATTERN = (
    rf"^[{_WS}]*[^{_WS}\u0000](?:[^\u0000]{{0,{TITLE_MAX - 2}}}[^{_WS}\u0000])?[{_WS}]*$"
)
TITLE_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "pattern": TITLE_PATTERN,
    "description": (
        f"Leading and trailing whitespace (Unicode White_Space) is trimmed; 1 to {TITLE_MAX} "
        "characters must remain. No NUL characters."
    ),
}

Title = Annotated[StrictStr, AfterValidator(_trimmed_title), WithJsonSchema(TITLE_SCHEMA)]
Description = Annotated[
    StrictStr,
    Field(
        max_length=DESCRIPTION_MAX,
        pattern=NO_NUL_PATTERN,
        description=f"At most {DESCRIPTION_MAX} characters, kept as sent. No NUL characters.",
    ),
    # Before the string checks, so NUL and lone surrogates get the same messages as in a title
    # (pydantic's own pattern check would call a surrogate "unable to parse raw data").
    BeforeValidator(_storable_text),
]
# format "date" (RFC 3339 full-date) admits year 0000, which Python's calendar (and so the API)
# does not; the pattern says so. Spelled without a lookahead, which not every client regex
# engine (or test generator) supports.
_YEAR_0001_TO_9999 = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"
DUE_DATE_SCHEMA = {
    "type": "string",
    "format": "date",
    "pattern": f"^{_YEAR_0001_TO_9999}-[0-9]{{2}}-[0-9]{{2}}$",
    "description": "A calendar date YYYY-MM-DD, years 0001 to 9999.",
}
DueDate = Annotated[date, BeforeValidator(_iso_date), WithJsonSchema(DUE_DATE_SCHEMA)]


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
    # The default is in words only: a schema `default` makes generated types require the field.
    completed: StrictBool = Field(
        default=False, description="Default: false.", json_schema_extra=without_default
    )
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

    # Immutable, so it is its own copy: FastAPI deep-copies a body's default for every request
    # without one (6.6 µs per toggle for a pydantic model).
    model_config = ConfigDict(extra="ignore", frozen=True)

    completed: OptionalCompleted = None

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        return self


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
