"""HTTP conditional requests on tasks (RFC 9110 section 13): `ETag`, `If-Match`, `If-None-Match`.

A task's entity tag is `"<id>.<version>"`: strong, the same under both path styles, and changed
by every write (the database bumps `version`, sql/0007_task_versions.sql) and by nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from todo_api.services.task_service import VersionCondition

# One entity-tag of a comma-separated list: optional W/, then a quoted opaque tag.
_ENTITY_TAG = re.compile(r'[ \t]*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*(?:,|$)')


def etag(task_id: int, version: int) -> str:
    return f'"{task_id}.{version}"'


@dataclass(frozen=True)
class EntityTag:
    weak: bool
    opaque: str
    wildcard: bool = False  # the header was `*`


def parse_entity_tags(values: Sequence[str]) -> list[EntityTag] | None:
    """The entity-tags of `If-Match`/`If-None-Match` header values (several headers combine).

    None when a value cannot be parsed: a precondition that cannot be read never matches.
    """
    tags: list[EntityTag] = []
    for value in values:
        if value.strip(" \t") == "*":
            tags.append(EntityTag(False, "", wildcard=True))
            continue
        position = 0
        while position < len(value):
            match = _ENTITY_TAG.match(value, position)
            if match is None or match.end() == position:
                return None
            tags.append(EntityTag(match.group(1) is not None, match.group(2)))
            position = match.end()
        if not value.strip(" \t"):
            return None
    return tags


def if_match_condition(values: Sequence[str], task_id: int) -> VersionCondition | None:
    """What `If-Match` asks of task `task_id`; None when the request has no If-Match.

    Strong comparison: a weak tag never matches, and neither does a tag of another task or a
    header that cannot be parsed (it admits no version at all).
    """
    if not values:
        return None
    tags = parse_entity_tags(values) or []
    if any(tag.wildcard for tag in tags):
        return VersionCondition(True, ())
    versions = [_version_of(tag.opaque, task_id) for tag in tags if not tag.weak]
    return VersionCondition(False, tuple(v for v in versions if v is not None))


def _version_of(opaque: str, task_id: int) -> int | None:
    """The version in a tag of ours for this task, or None (another task's, or not ours)."""
    owner, _, version = opaque.partition(".")
    if owner != str(task_id) or not (version.isascii() and version.isdigit()):
        return None
    number = int(version[:20])
    return number if len(version) <= 19 and number < 2**63 else None


def none_match(values: Sequence[str], current: str) -> bool:
    """Whether `If-None-Match` matches the current tag (weak comparison): then 304."""
    tags = parse_entity_tags(values)
    if not tags:
        return False
    opaque = current.strip('"')
    return any(tag.wildcard or tag.opaque == opaque for tag in tags)
