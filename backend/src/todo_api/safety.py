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
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg.rows import class_row, dict_row

from todo_api.db import REQUEST_ROLE

COMMANDS = ("select", "insert", "update", "delete")
RowT = TypeVar("RowT")


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


@dataclass(frozen=True)
class Policy:
    table: str
    name: str
    command: str
    permissive: bool
    roles: list[str]
    using_expression: str | None
    check_expression: str | None

    def __str__(self) -> str:
        kind = "" if self.permissive else ", restrictive"
        return f"{self.name} ({self.command}{kind}, to {', '.join(self.roles)})"

    def applies_to(self, role: str) -> bool:
        return "public" in self.roles or role in self.roles

    def covers(self, command: str) -> bool:
        return self.command in ("all", command)


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
    role: dict[str, object] | None
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
            lines.extend(f"  {key}: {value}" for key, value in self.role.items())
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
            f"Findings ({counts[Severity.ERROR]} error, {counts[Severity.WARNING]} warning, "
            f"{counts[Severity.INFO]} info):"
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
            lines.append(
                f"UNSAFE: {counts[Severity.ERROR]} error-level findings; a request could bypass "
                "row-level security."
            )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The same report as plain data, for `todo-api check --format json`."""
        return {
            "server_version": self.server_version,
            "request_role": {"name": REQUEST_ROLE, "exists": self.role is not None}
            | (self.role or {}),
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


# --- Catalog queries: every column named, read with class_row or dict_row ------------------------

_SERVER_QUERY: LiteralString = """
select current_setting('server_version') as version,
       current_setting('server_version_num')::int as version_num
"""

_ROLE_QUERY: LiteralString = """
select r.rolsuper as superuser, r.rolbypassrls as bypassrls, r.rolcanlogin as can_login,
       r.rolinherit as inherit, r.rolcreaterole as createrole, r.rolcreatedb as createdb,
       pg_has_role(current_user, r.oid, 'MEMBER') as login_role_can_enter,
       exists (
           select from pg_auth_members m join pg_roles g on g.oid = m.roleid
           where m.member = r.oid and (g.rolsuper or g.rolbypassrls)
       ) as member_of_privileged_role,
       (select count(*) from pg_class c where c.relowner = r.oid)
     + (select count(*) from pg_namespace n where n.nspowner = r.oid)
     + (select count(*) from pg_proc p where p.proowner = r.oid)
     + (select count(*) from pg_type t where t.typowner = r.oid) as owned_objects
from pg_roles r where r.rolname = %(role)s
"""

# Every table of the application's schema (extension members excluded): user-data tables are
# reported in full, the others are still checked for policies and TRUNCATE.
_TABLES_QUERY: LiteralString = """
select c.relname as name,
       exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'user_id'
               and not a.attisdropped) as holds_user_data,
       c.relrowsecurity as rls_enabled, c.relforcerowsecurity as rls_forced,
       has_table_privilege(%(role)s, c.oid, 'SELECT') as can_select,
       has_table_privilege(%(role)s, c.oid, 'INSERT') or
           has_any_column_privilege(%(role)s, c.oid, 'INSERT') as can_insert,
       has_table_privilege(%(role)s, c.oid, 'UPDATE') or
           has_any_column_privilege(%(role)s, c.oid, 'UPDATE') as can_update,
       has_table_privilege(%(role)s, c.oid, 'DELETE') as can_delete,
       has_table_privilege(%(role)s, c.oid, 'TRUNCATE') as can_truncate,
       exists (
           select from pg_index i
           join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
           where i.indrelid = c.oid and a.attname = 'user_id'
       ) as user_id_leads_an_index
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p')
  and n.nspname = current_schema()
  and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass
                  and d.objid = c.oid and d.deptype = 'e')
order by c.relname
"""

_POLICIES_QUERY: LiteralString = """
select tablename as "table", policyname as name, lower(cmd) as command,
       permissive = 'PERMISSIVE' as permissive, roles::text[] as roles,
       qual as using_expression, with_check as check_expression
from pg_policies
where schemaname = current_schema()
order by tablename, policyname
"""

# Views and materialized views in any schema that read a user-data table, directly or through
# other views (pg_rewrite's dependencies, followed recursively).
_VIEWS_QUERY: LiteralString = """
with recursive user_data as (
    select c.oid from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p') and n.nspname = current_schema()
      and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'user_id'
                  and not a.attisdropped)
), reads (view_oid, table_oid) as (
    select r.ev_class, d.refobjid
    from pg_rewrite r
    join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
                    and d.refclassid = 'pg_class'::regclass and d.refobjid <> r.ev_class
    union
    select r.ev_class, reads.table_oid
    from pg_rewrite r
    join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
                    and d.refclassid = 'pg_class'::regclass and d.refobjid <> r.ev_class
    join reads on reads.view_oid = d.refobjid
)
select v.oid::regclass::text as name, v.relkind = 'm' as materialized,
       coalesce((select o.option_value::boolean from pg_options_to_table(v.reloptions) o
                 where o.option_name = 'security_invoker'), false) as security_invoker,
       has_schema_privilege(%(role)s, v.relnamespace, 'USAGE')
           and has_table_privilege(%(role)s, v.oid, 'SELECT') as readable_by_request_role,
       array_agg(distinct t.relname::text order by t.relname::text) as user_data_tables
from reads
join user_data u on u.oid = reads.table_oid
join pg_class t on t.oid = reads.table_oid
join pg_class v on v.oid = reads.view_oid
where v.relkind in ('v', 'm')
group by v.oid, v.relkind, v.reloptions, v.relnamespace
order by 1
"""

_DEFINER_FUNCTIONS_QUERY: LiteralString = """
select p.oid::regprocedure::text as signature, pg_get_userbyid(p.proowner) as owner,
       exists (select from unnest(coalesce(p.proconfig, '{}')) s where s like 'search_path=%%')
           as search_path_pinned,
       has_function_privilege('public', p.oid, 'EXECUTE') as executable_by_public,
       exists (select from pg_roles o where o.oid = p.proowner and (o.rolsuper or o.rolbypassrls))
       or exists (
           select from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where c.relkind in ('r', 'p') and n.nspname = current_schema()
             and exists (select from pg_attribute a where a.attrelid = c.oid
                         and a.attname = 'user_id' and not a.attisdropped)
             and has_table_privilege(p.proowner, c.oid, 'SELECT, INSERT, UPDATE, DELETE')
       ) as owner_reaches_user_data
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
where p.prosecdef
  and n.nspname not in ('pg_catalog', 'information_schema')
  and not exists (select from pg_depend d where d.classid = 'pg_proc'::regclass
                  and d.objid = p.oid and d.deptype = 'e')
order by 1
"""

# What is granted to the request role itself (aclexplode of each catalog's ACL column), in the
# same form as sql/expected_grants.csv.
_GRANTS_QUERY: LiteralString = """
with request_role as (select oid from pg_roles where rolname = %(role)s)
select 'schema' as kind, n.nspname::text as object, a.privilege_type as privilege
from pg_namespace n cross join lateral aclexplode(n.nspacl) a
where a.grantee = (select oid from request_role)
union all
select 'table', c.oid::regclass::text, a.privilege_type
from pg_class c cross join lateral aclexplode(c.relacl) a
where a.grantee = (select oid from request_role)
union all
select 'column', c.oid::regclass::text || '.' || quote_ident(att.attname), a.privilege_type
from pg_attribute att join pg_class c on c.oid = att.attrelid
cross join lateral aclexplode(att.attacl) a
where a.grantee = (select oid from request_role)
union all
select 'function', p.oid::regprocedure::text, a.privilege_type
from pg_proc p cross join lateral aclexplode(p.proacl) a
where a.grantee = (select oid from request_role)
"""


@dataclass(frozen=True)
class _TableRow:
    name: str
    holds_user_data: bool
    rls_enabled: bool
    rls_forced: bool
    can_select: bool
    can_insert: bool
    can_update: bool
    can_delete: bool
    can_truncate: bool
    user_id_leads_an_index: bool

    @property
    def granted(self) -> list[str]:
        allowed = (self.can_select, self.can_insert, self.can_update, self.can_delete)
        return [command for command, can in zip(COMMANDS, allowed, strict=True) if can]


@dataclass(frozen=True)
class _ViewRow:
    name: str
    materialized: bool
    security_invoker: bool
    readable_by_request_role: bool
    user_data_tables: list[str]


@dataclass(frozen=True)
class _DefinerRow:
    signature: str
    owner: str
    search_path_pinned: bool
    executable_by_public: bool
    owner_reaches_user_data: bool


@dataclass(frozen=True, order=True)
class Grant:
    """One privilege held by the request role: ("column", "tasks.title", "UPDATE")."""

    kind: str
    object: str
    privilege: str

    def __str__(self) -> str:
        return f"{self.privilege} on {self.kind} {self.object}"


def _rows(conn: psycopg.Connection[Any], query: LiteralString, row_type: type[RowT]) -> list[RowT]:
    with conn.cursor(row_factory=class_row(row_type)) as cursor:
        return cursor.execute(query, {"role": REQUEST_ROLE}).fetchall()


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
    for (number, _), row in zip(numbered[1:], reader, strict=True):
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


def outside_subselects(expression: str) -> str:
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


# --- The checks ---------------------------------------------------------------------------------


def inspect_database(
    conn: psycopg.Connection[Any], expected_grants: frozenset[Grant] | None = None
) -> SafetyReport:
    """Read the catalogs and report everything that would let a request escape RLS, and more.

    `expected_grants` (from sql/expected_grants.csv) enables the comparison of the request role's
    privileges with what the API needs.
    """
    with conn.cursor(row_factory=dict_row) as cursor:
        server = cursor.execute(_SERVER_QUERY).fetchone()
        role = cursor.execute(_ROLE_QUERY, {"role": REQUEST_ROLE}).fetchone()
    if server is None:  # pragma: no cover - the query always returns one row
        raise RuntimeError("the server returned no version")
    report = SafetyReport(role, str(server["version"]))
    _check_server_version(report, int(server["version_num"]))
    if role is None:
        report.add("role_missing", Severity.ERROR, f"role {REQUEST_ROLE}", "does not exist")
        return report
    _check_role(report, role)
    tables = _rows(conn, _TABLES_QUERY, _TableRow)
    policies = _rows(conn, _POLICIES_QUERY, Policy)
    _check_tables(report, tables, policies)
    _check_policies(report, tables, policies)
    _check_views(report, _rows(conn, _VIEWS_QUERY, _ViewRow))
    _check_definer_functions(report, _rows(conn, _DEFINER_FUNCTIONS_QUERY, _DefinerRow))
    if expected_grants is not None:
        _check_grants(report, set(_rows(conn, _GRANTS_QUERY, Grant)), expected_grants)
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


def _check_role(report: SafetyReport, role: dict[str, Any]) -> None:
    subject = f"role {REQUEST_ROLE}"
    for key, bad, name, reason in _ROLE_FLAWS:
        if role[key] is bad:
            report.add(name, Severity.ERROR, subject, reason)
    if role["owned_objects"]:
        report.add(
            "role_owns_objects",
            Severity.ERROR,
            subject,
            f"owns {role['owned_objects']} objects (owners bypass RLS)",
        )


def _check_tables(report: SafetyReport, tables: list[_TableRow], policies: list[Policy]) -> None:
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


def _check_user_data_table(report: SafetyReport, rel: _TableRow, policies: list[Policy]) -> None:
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


def _check_policies(report: SafetyReport, tables: list[_TableRow], policies: list[Policy]) -> None:
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
        _check_setting_reads(report, subject, policy)
    for table in sorted({p.table for p in policies}):
        _check_overlapping_policies(report, table, [p for p in policies if p.table == table])


def _check_setting_reads(report: SafetyReport, subject: str, policy: Policy) -> None:
    expressions = list(_expressions(policy))
    if any(_SETTING_CALL.search(outside_subselects(e)) for e in expressions):
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


def _check_views(report: SafetyReport, views: list[_ViewRow]) -> None:
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


def _check_definer_functions(report: SafetyReport, functions: list[_DefinerRow]) -> None:
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
            over_user_data = function.owner_reaches_user_data
            report.add(
                "security_definer_executable_by_public",
                Severity.ERROR if over_user_data else Severity.WARNING,
                subject,
                f"SECURITY DEFINER (as {function.owner}) and executable by PUBLIC"
                + (f"; {function.owner} can reach user data" if over_user_data else ""),
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
