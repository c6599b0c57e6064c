"""Is the database safe to serve from? The start-up check and `todo-api check` share this.

Besides the RLS flags, policies and request-role attributes every request depends on, the report
carries advisor-style findings, after Supabase's database advisor (splinter): each names a check,
a severity, the object it concerns and a one-line reason. Any error-level finding makes the
database unsafe: `todo-api check` exits 1 and `todo-api serve` refuses to start.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg

from todo_api import catalog
from todo_api.catalog import (
    COMMANDS,
    CURRENT_USER_FUNCTION,
    DefinerRow,
    FunctionRow,
    Grant,
    Policy,
    RoleRow,
    ServerRow,
    TableRow,
    ViewRow,
    read_row,
    read_rows,
)
from todo_api.db import REQUEST_ROLE


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    name: str
    severity: Severity
    object: str
    reason: str

    def __str__(self) -> str:
        return f"{self.object}: {self.reason}"


@dataclass
class TableReport:
    name: str
    rls_enabled: bool
    rls_forced: bool
    policies: list[Policy]
    granted: list[str]
    unguarded_commands: list[str]

    @property
    def safe(self) -> bool:
        return self.rls_enabled and self.rls_forced and not self.unguarded_commands


@dataclass
class SafetyReport:
    role: RoleRow | None
    server_version: str = ""
    tables: list[TableReport] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """The error-level findings, one line each: what would let a request escape RLS."""
        return [str(f) for f in self.findings if f.severity is Severity.ERROR]

    @property
    def safe(self) -> bool:
        return not self.problems

    def add(self, name: str, severity: Severity, obj: str, reason: str) -> None:
        self.findings.append(Finding(name, severity, obj, reason))

    def render(self) -> str:
        """A plain-text report a DBA can read."""
        lines = [f"Server: PostgreSQL {self.server_version}", f"Request role {REQUEST_ROLE}:"]
        if self.role is None:
            lines.append("  MISSING")
        else:
            lines.extend(f"  {key}: {value}" for key, value in asdict(self.role).items())
        lines.append("Tables holding user data (user_id column):")
        for table in self.tables:
            lines.append(
                f"  {table.name}: rls_enabled={table.rls_enabled} rls_forced={table.rls_forced} "
                f"grants={','.join(table.granted) or '-'}"
            )
            lines.extend(f"    policy {policy}" for policy in table.policies)
            if not table.policies:
                lines.append("    (no policies)")
        if not self.tables:
            lines.append("  (none found)")
        counts = {s: sum(f.severity is s for f in self.findings) for s in Severity}
        lines.append(
            f"Findings (error {counts[Severity.ERROR]}, warning {counts[Severity.WARNING]}, "
            f"info {counts[Severity.INFO]}):"
        )
        width = max((len(f.name) for f in self.findings), default=0)
        lines.extend(
            f"  {f.severity.value:<7} {f.name:<{width}}  {f}" for f in _ordered(self.findings)
        )
        if not self.findings:
            lines.append("  (none)")
        if self.safe:
            lines.append("SAFE: requests as todo_app are confined by row-level security.")
        else:
            errors = counts[Severity.ERROR]
            lines.append(
                f"UNSAFE: {errors} error-level finding{'' if errors == 1 else 's'}; a request "
                "could bypass row-level security."
            )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The same report as plain data, for `todo-api check --format json`."""
        return {
            "server_version": self.server_version,
            "request_role": {"name": REQUEST_ROLE, "exists": self.role is not None}
            | (asdict(self.role) if self.role else {}),
            "tables": [
                {
                    "name": t.name,
                    "rls_enabled": t.rls_enabled,
                    "rls_forced": t.rls_forced,
                    "grants": t.granted,
                    "policies": [
                        {
                            "name": p.name,
                            "command": p.command,
                            "permissive": p.permissive,
                            "roles": p.roles,
                            "using": p.using_expression,
                            "with_check": p.check_expression,
                        }
                        for p in t.policies
                    ],
                }
                for t in self.tables
            ],
            "findings": [asdict(f) for f in _ordered(self.findings)],
            "safe": self.safe,
        }


def _ordered(findings: Iterable[Finding]) -> list[Finding]:
    rank = {s: i for i, s in enumerate(Severity)}
    return sorted(findings, key=lambda f: (rank[f.severity], f.name, f.object))


# --- Expected grants (sql/expected_grants.csv) -------------------------------------------------

GRANT_KINDS = ("schema", "table", "column", "function")


class ExpectedGrantsError(ValueError):
    """sql/expected_grants.csv cannot be read; the message names the file and line."""


def load_expected_grants(path: Path) -> frozenset[Grant]:
    """The grants listed in `path` (CSV with a kind,object,privilege header; # lines are notes)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExpectedGrantsError(f"cannot read {path}: {exc.strerror}") from None
    numbered = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    reader = csv.DictReader(line for _, line in numbered)
    if reader.fieldnames != ["kind", "object", "privilege"]:
        raise ExpectedGrantsError(f"{path}: the header must be kind,object,privilege")
    grants = set()
    for (number, _), row in zip(numbered[1:], reader, strict=False):
        kind, obj, privilege = row["kind"], row["object"], row["privilege"]
        if kind not in GRANT_KINDS or not obj or not privilege or None in row:
            raise ExpectedGrantsError(
                f"{path} line {number}: expected kind,object,privilege with kind one of "
                f"{', '.join(GRANT_KINDS)}"
            )
        grants.add(Grant(kind, obj.strip(), privilege.strip().upper()))
    return frozenset(grants)


# --- Known RLS vulnerabilities of the server ----------------------------------------------------


@dataclass(frozen=True)
class KnownVulnerability:
    cve: str
    summary: str
    first_fixed: dict[int, int]  # major version -> first fixed server_version_num
    fixed_from_major: int  # every release of this major and later is fixed

    def affects(self, version_num: int) -> bool:
        major = version_num // 10000
        if major >= self.fixed_from_major:
            return False
        # Majors older than every fixed branch were out of support and got no fix.
        return version_num < self.first_fixed.get(major, 10**9)

    def fixed_releases(self) -> str:
        return ", ".join(
            f"{v // 10000}.{v % 10000}" for v in sorted(self.first_fixed.values(), reverse=True)
        )


RLS_VULNERABILITIES = (
    KnownVulnerability(
        "CVE-2023-2455",
        "row security policies can apply to the wrong role after a SQL function is inlined",
        {15: 150003, 14: 140008, 13: 130011, 12: 120015, 11: 110020},
        16,
    ),
    KnownVulnerability(
        "CVE-2025-8713",
        "planner statistics can reveal rows that row security hides",
        {17: 170006, 16: 160010, 15: 150014, 14: 140019, 13: 130022},
        18,
    ),
)


def vulnerabilities_of(version_num: int) -> list[KnownVulnerability]:
    """The known RLS vulnerabilities a server of this `server_version_num` has not been fixed of."""
    return [v for v in RLS_VULNERABILITIES if v.affects(version_num)]


# --- Reading policy expressions -----------------------------------------------------------------

_SUBSELECT = re.compile(r"\(\s*select\b", re.IGNORECASE)
_SETTING_CALL = re.compile(r"\bcurrent_setting\s*\(", re.IGNORECASE)
# nullif(current_setting('…'::text[, true]), ''::text), as pg_get_expr prints it.
_SETTING_IN_NULLIF = re.compile(
    r"\bnullif\s*\(\s*(?:pg_catalog\.)?current_setting\s*\((?:[^()']|'(?:[^']|'')*')*\)"
    r"\s*,\s*''(?:::text)?\s*\)",
    re.IGNORECASE,
)


def _end_of_parenthesis(text: str, start: int) -> int:
    """Index just past the parenthesis opened at `start`, skipping quoted strings and names."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char in "'\"":
            i = text.find(char, i + 1)
            if i < 0:
                return len(text)
            # A doubled quote is an escaped one inside the same literal.
            while i + 1 < len(text) and text[i + 1] == char:
                i = text.find(char, i + 2)
                if i < 0:
                    return len(text)
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def _outside_subselects(expression: str) -> str:
    """The expression with every parenthesised sub-select cut out."""
    kept, i = [], 0
    while (match := _SUBSELECT.search(expression, i)) is not None:
        kept.append(expression[i : match.start()])
        i = _end_of_parenthesis(expression, match.start())
    kept.append(expression[i:])
    return "".join(kept)


def _is_constant_true(expression: str | None) -> bool:
    return expression is not None and expression.strip().strip("()").strip().lower() == "true"


def _expressions(policy: Policy) -> Iterator[str]:
    yield from filter(None, (policy.using_expression, policy.check_expression))


_CURRENT_USER_CALL = re.compile(rf"\b(?:\w+\.)?{CURRENT_USER_FUNCTION}\s*\(\s*\)", re.IGNORECASE)
_SELECT_BODY = re.compile(r"^\s*select\s+(.*?)[\s;]*$", re.IGNORECASE | re.DOTALL)


def _inlined(expression: str, function: FunctionRow | None) -> str:
    """The expression with each call of the current-user function replaced by what it computes
    (for LANGUAGE sql, the selected expression, as the planner inlines it), so the setting-read
    checks judge the expression that actually runs."""
    if function is None:
        return expression
    select = _SELECT_BODY.match(function.body) if function.language == "sql" else None
    body = select.group(1) if select else function.body
    return _CURRENT_USER_CALL.sub(lambda _: body, expression)


# --- The checks ---------------------------------------------------------------------------------


def inspect_database(
    conn: psycopg.Connection[Any], expected_grants: frozenset[Grant] | None = None
) -> SafetyReport:
    """Read the catalogs and report everything that would let a request escape RLS, and more.

    `expected_grants` (from sql/expected_grants.csv) enables the comparison of the request role's
    privileges with what the API needs.
    """
    server = read_row(conn, catalog.SERVER_QUERY, ServerRow)
    role = read_row(conn, catalog.ROLE_QUERY, RoleRow)
    if server is None:  # pragma: no cover - the query always returns one row
        raise RuntimeError("the server returned no version")
    report = SafetyReport(role, server.version)
    _check_server_version(report, server.version_num)
    if role is None:
        report.add("role_missing", Severity.ERROR, f"role {REQUEST_ROLE}", "does not exist")
        return report
    _check_role(report, role)
    tables = read_rows(conn, catalog.TABLES_QUERY, TableRow)
    policies = read_rows(conn, catalog.POLICIES_QUERY, Policy)
    current_user = read_row(conn, catalog.CURRENT_USER_FUNCTION_QUERY, FunctionRow)
    _check_tables(report, tables, policies)
    _check_policies(report, tables, policies, current_user)
    if current_user is not None:
        _check_current_user_function(report, current_user)
    _check_views(report, read_rows(conn, catalog.VIEWS_QUERY, ViewRow))
    _check_definer_functions(report, read_rows(conn, catalog.DEFINER_FUNCTIONS_QUERY, DefinerRow))
    if expected_grants is not None:
        _check_grants(report, set(read_rows(conn, catalog.GRANTS_QUERY, Grant)), expected_grants)
    return report


def _check_server_version(report: SafetyReport, version_num: int) -> None:
    for flaw in vulnerabilities_of(version_num):
        report.add(
            "server_version_vulnerable",
            Severity.WARNING,
            f"server PostgreSQL {report.server_version}",
            f"{flaw.cve}: {flaw.summary}; fixed in {flaw.fixed_releases()} and every release "
            f"from {flaw.fixed_from_major} on: upgrade the minor version",
        )


_ROLE_FLAWS = (
    ("superuser", True, "role_superuser", "is a superuser (superusers ignore RLS)"),
    ("bypassrls", True, "role_bypassrls", "has BYPASSRLS"),
    ("can_login", True, "role_can_login", "can log in (it must be NOLOGIN)"),
    ("createrole", True, "role_createrole", "has CREATEROLE"),
    (
        "member_of_privileged_role",
        True,
        "role_member_of_privileged",
        "is a member of a superuser or BYPASSRLS role",
    ),
    (
        "login_role_can_enter",
        False,
        "role_not_enterable",
        "cannot be entered by the login role (SET ROLE fails)",
    ),
)


def _check_role(report: SafetyReport, role: RoleRow) -> None:
    subject = f"role {REQUEST_ROLE}"
    for attribute, bad, name, reason in _ROLE_FLAWS:
        if getattr(role, attribute) is bad:
            report.add(name, Severity.ERROR, subject, reason)
    if role.owned_objects:
        report.add(
            "role_owns_objects",
            Severity.ERROR,
            subject,
            f"owns {role.owned_objects} objects (owners bypass RLS)",
        )


def _check_tables(report: SafetyReport, tables: list[TableRow], policies: list[Policy]) -> None:
    for rel in tables:
        subject = f"table {rel.name}"
        own = [p for p in policies if p.table == rel.name]
        if rel.can_truncate:
            report.add(
                "truncate_granted",
                Severity.ERROR,
                subject,
                f"TRUNCATE is granted to {REQUEST_ROLE}, and TRUNCATE ignores row-level security",
            )
        if own and not rel.rls_enabled:
            report.add(
                "policy_exists_rls_disabled",
                Severity.ERROR,
                subject,
                f"row-level security is not enabled, so its {len(own)} policies are ignored",
            )
        if rel.rls_enabled and not own:
            report.add(
                "rls_enabled_no_policy",
                Severity.INFO,
                subject,
                "row-level security is enabled without any policy: every row is hidden from "
                "roles that do not own it",
            )
        if rel.holds_user_data:
            _check_user_data_table(report, rel, own)
    if not any(rel.holds_user_data for rel in tables):
        report.add(
            "no_user_data_tables",
            Severity.ERROR,
            "schema",
            "no table with a user_id column found: migrations not applied?",
        )


def _check_user_data_table(report: SafetyReport, rel: TableRow, policies: list[Policy]) -> None:
    subject = f"table {rel.name}"
    covered = {
        command
        for command in COMMANDS
        for p in policies
        if p.permissive and p.applies_to(REQUEST_ROLE) and p.covers(command)
    }
    unguarded = [command for command in rel.granted if command not in covered]
    report.tables.append(
        TableReport(rel.name, rel.rls_enabled, rel.rls_forced, policies, rel.granted, unguarded)
    )
    if not rel.rls_enabled and not policies:
        report.add("rls_disabled", Severity.ERROR, subject, "row-level security is not enabled")
    if not rel.rls_forced:
        report.add(
            "rls_not_forced",
            Severity.ERROR,
            subject,
            "row-level security is not forced: the table owner (the login role) bypasses it",
        )
    for command in unguarded:
        report.add(
            "granted_command_without_policy",
            Severity.ERROR,
            subject,
            f"{command} is granted to {REQUEST_ROLE} without a permissive policy",
        )
    if not rel.user_id_leads_an_index:
        report.add(
            "user_id_not_indexed",
            Severity.WARNING,
            subject,
            "no index starts with user_id: every policy check reads the whole table",
        )


def _check_policies(
    report: SafetyReport,
    tables: list[TableRow],
    policies: list[Policy],
    current_user: FunctionRow | None,
) -> None:
    user_data = {rel.name for rel in tables if rel.holds_user_data}
    for policy in policies:
        subject = f"policy {policy.name} on {policy.table}"
        if policy.permissive and any(map(_is_constant_true, _expressions(policy))):
            report.add(
                "policy_always_true",
                Severity.ERROR if policy.table in user_data else Severity.WARNING,
                subject,
                f"a permissive policy whose expression is true admits every row to "
                f"{', '.join(policy.roles)}",
            )
        if policy.permissive and "public" in policy.roles:
            report.add(
                "policy_applies_to_public",
                Severity.WARNING,
                subject,
                f"applies to PUBLIC, i.e. every role, not only {REQUEST_ROLE}",
            )
        _check_setting_reads(report, subject, policy, current_user)
    for table in sorted({p.table for p in policies}):
        _check_overlapping_policies(report, table, [p for p in policies if p.table == table])


def _check_setting_reads(
    report: SafetyReport, subject: str, policy: Policy, current_user: FunctionRow | None
) -> None:
    expressions = [_inlined(e, current_user) for e in _expressions(policy)]
    if any(_SETTING_CALL.search(_outside_subselects(e)) for e in expressions):
        report.add(
            "policy_setting_read_per_row",
            Severity.WARNING,
            subject,
            "current_setting(...) is not wrapped as (select ...), so it is evaluated for every row",
        )
    calls = sum(len(_SETTING_CALL.findall(e)) for e in expressions)
    guarded = sum(len(_SETTING_IN_NULLIF.findall(e)) for e in expressions)
    if guarded < calls:
        report.add(
            "policy_setting_without_nullif",
            Severity.WARNING,
            subject,
            "current_setting(...) is not wrapped in nullif(..., ''): a setting reset to '' must "
            "match no row",
        )


def _check_current_user_function(report: SafetyReport, function: FunctionRow) -> None:
    subject = f"function {function.signature}"
    if function.volatility == "immutable":
        report.add(
            "current_user_function_immutable",
            Severity.ERROR,
            subject,
            "is IMMUTABLE: the planner may fold one request's user into a plan that a prepared "
            "statement reuses for the next user",
        )
    obstacles = [
        why
        for why, present in (
            (f"is LANGUAGE {function.language}", function.language != "sql"),
            ("is SECURITY DEFINER", function.security_definer),
            ("has a SET clause", function.has_set_clause),
            ("is VOLATILE", function.volatility == "volatile"),
        )
        if present
    ]
    if obstacles:
        report.add(
            "current_user_function_not_inlinable",
            Severity.WARNING,
            subject,
            f"{' and '.join(obstacles)}, so the planner cannot inline it: every policy check "
            "calls it instead of reading the setting directly",
        )


def _check_overlapping_policies(report: SafetyReport, table: str, policies: list[Policy]) -> None:
    permissive = [p for p in policies if p.permissive]
    roles = [*sorted({role for p in permissive for role in p.roles} - {"public"}), "public"]
    for role in roles:
        for command in COMMANDS:
            names = [p.name for p in permissive if p.covers(command) and p.applies_to(role)]
            own = [p for p in permissive if p.name in names and role in p.roles]
            # Overlaps among PUBLIC policies alone are reported once, under public.
            if len(names) > 1 and own:
                report.add(
                    "multiple_permissive_policies",
                    Severity.WARNING,
                    f"table {table}",
                    f"{len(names)} permissive policies for {command} to {role} "
                    f"({', '.join(names)}) are OR-ed: any one of them admits a row",
                )


def _check_views(report: SafetyReport, views: list[ViewRow]) -> None:
    for view in views:
        if view.security_invoker and not view.materialized:
            continue
        kind = "materialized view" if view.materialized else "view"
        why = (
            "is filled by its owner, so row-level security does not apply to its rows"
            if view.materialized
            else "runs as its owner (no security_invoker), so row-level security does not "
            "apply to the caller"
        )
        readable = view.readable_by_request_role
        report.add(
            "view_bypasses_rls",
            Severity.ERROR if readable else Severity.WARNING,
            f"{kind} {view.name}",
            f"reads {', '.join(view.user_data_tables)} and {why}"
            + (f"; {REQUEST_ROLE} may select from it" if readable else ""),
        )


def _check_definer_functions(report: SafetyReport, functions: list[DefinerRow]) -> None:
    for function in functions:
        subject = f"function {function.signature}"
        if not function.search_path_pinned:
            report.add(
                "security_definer_search_path_mutable",
                Severity.WARNING,
                subject,
                f"SECURITY DEFINER (as {function.owner}) without a pinned search_path: a caller "
                "can shadow the objects it uses",
            )
        if function.executable_by_public:
            # An error when a request could call it and it could touch user data as its owner.
            dangerous = function.owner_reaches_user_data and function.schema_usable_by_request_role
            report.add(
                "security_definer_executable_by_public",
                Severity.ERROR if dangerous else Severity.WARNING,
                subject,
                f"SECURITY DEFINER (as {function.owner}) and executable by PUBLIC"
                + (f"; {function.owner} can reach user data" if dangerous else ""),
            )


def _check_grants(report: SafetyReport, actual: set[Grant], expected: frozenset[Grant]) -> None:
    for grant in sorted(actual - expected):
        report.add(
            "unexpected_grant",
            Severity.WARNING,
            f"{grant.kind} {grant.object}",
            f"{grant.privilege} is granted to {REQUEST_ROLE} but not listed in "
            "sql/expected_grants.csv",
        )
    for grant in sorted(expected - actual):
        report.add(
            "missing_grant",
            Severity.WARNING,
            f"{grant.kind} {grant.object}",
            f"{grant.privilege} is listed in sql/expected_grants.csv but not granted to "
            f"{REQUEST_ROLE}",
        )
