"""Is the database safe to serve from? The start-up check and `todo-api check` share this."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg.rows import dict_row

from todo_api.db import REQUEST_ROLE

_ROLE_QUERY = """
select r.rolname, r.rolsuper, r.rolbypassrls, r.rolcanlogin, r.rolinherit, r.rolcreaterole,
       r.rolcreatedb,
       pg_has_role(current_user, r.oid, 'MEMBER') as login_can_enter,
       exists (
           select from pg_auth_members m join pg_roles g on g.oid = m.roleid
           where m.member = r.oid and (g.rolsuper or g.rolbypassrls)
       ) as member_of_privileged,
       (select count(*) from pg_class c where c.relowner = r.oid)
     + (select count(*) from pg_namespace n where n.nspowner = r.oid)
     + (select count(*) from pg_proc p where p.proowner = r.oid)
     + (select count(*) from pg_type t where t.typowner = r.oid) as owned_objects
from pg_roles r where r.rolname = %s
"""

_TABLES_QUERY = """
select c.relname, c.relrowsecurity, c.relforcerowsecurity,
       has_table_privilege(%(role)s, c.oid, 'SELECT') as can_select,
       has_table_privilege(%(role)s, c.oid, 'INSERT') or
           has_any_column_privilege(%(role)s, c.oid, 'INSERT') as can_insert,
       has_table_privilege(%(role)s, c.oid, 'UPDATE') or
           has_any_column_privilege(%(role)s, c.oid, 'UPDATE') as can_update,
       has_table_privilege(%(role)s, c.oid, 'DELETE') as can_delete,
       coalesce((
           select array_agg(p.polname || ' (' || case p.polcmd when 'r' then 'select'
               when 'a' then 'insert' when 'w' then 'update' when 'd' then 'delete' else 'all' end
               || case when p.polpermissive then '' else ', restrictive' end || ', to '
               || coalesce((select string_agg(coalesce(g.rolname, 'public'), ', ')
                            from unnest(p.polroles) as pr(oid)
                            left join pg_roles g on g.oid = pr.oid), 'public') || ')'
               order by p.polname)
           from pg_policy p where p.polrelid = c.oid), '{}') as policies,
       coalesce((
           select array_agg(distinct case p.polcmd when 'r' then 'select' when 'a' then 'insert'
               when 'w' then 'update' when 'd' then 'delete' else 'all' end)
           from pg_policy p
           where p.polrelid = c.oid and p.polpermissive
             -- only policies that apply to the request role (or to everyone) cover its commands
             and (0 = any(p.polroles)
                  or (select oid from pg_roles where rolname = %(role)s) = any(p.polroles))
       ), '{}') as policy_commands
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p')
  and n.nspname = current_schema()
  and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'user_id'
              and not a.attisdropped)
order by c.relname
"""


@dataclass
class TableReport:
    name: str
    rls_enabled: bool
    rls_forced: bool
    policies: list[str]
    granted: list[str]
    unguarded_commands: list[str]

    @property
    def safe(self) -> bool:
        return self.rls_enabled and self.rls_forced and not self.unguarded_commands


@dataclass
class SafetyReport:
    role: dict[str, object] | None
    tables: list[TableReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return not self.problems

    def render(self) -> str:
        """A plain-text report a DBA can read."""
        lines = [f"Request role {REQUEST_ROLE}:"]
        if self.role is None:
            lines.append("  MISSING")
        else:
            for key, value in self.role.items():
                if key != "rolname":
                    lines.append(f"  {key}: {value}")
        lines.append("Tables holding user data (user_id column):")
        for table in self.tables:
            lines.append(
                f"  {table.name}: rls_enabled={table.rls_enabled} rls_forced={table.rls_forced} "
                f"grants={','.join(table.granted) or '-'}"
            )
            for policy in table.policies or ["(no policies)"]:
                lines.append(f"    policy {policy}")
        if not self.tables:
            lines.append("  (none found)")
        if self.problems:
            lines.append("UNSAFE: a request could bypass row-level security:")
            lines.extend(f"  - {problem}" for problem in self.problems)
        else:
            lines.append("SAFE: requests as todo_app are confined by row-level security.")
        return "\n".join(lines)


def inspect_database(conn: psycopg.Connection[tuple[object, ...]]) -> SafetyReport:
    """Read the role and table catalogs and list everything that would let a request escape RLS."""
    row = conn.execute(_ROLE_QUERY, (REQUEST_ROLE,)).fetchone()
    if row is None:
        return SafetyReport(None, problems=[f"role {REQUEST_ROLE} does not exist"])
    names = [
        "rolname",
        "superuser",
        "bypassrls",
        "can_login",
        "inherit",
        "createrole",
        "createdb",
        "login_role_can_enter",
        "member_of_privileged_role",
        "owned_objects",
    ]
    role = dict(zip(names, row, strict=True))
    report = SafetyReport(role)
    checks = [
        ("superuser", True, "is a superuser"),
        ("bypassrls", True, "has BYPASSRLS"),
        ("can_login", True, "can log in (it must be NOLOGIN)"),
        ("createrole", True, "has CREATEROLE"),
        ("member_of_privileged_role", True, "is a member of a superuser or BYPASSRLS role"),
        ("login_role_can_enter", False, "cannot be entered by the login role (SET ROLE fails)"),
    ]
    for key, bad, text in checks:
        if role[key] is bad:
            report.problems.append(f"role {REQUEST_ROLE} {text}")
    if role["owned_objects"]:
        report.problems.append(
            f"role {REQUEST_ROLE} owns {role['owned_objects']} objects (owners bypass RLS)"
        )
    with conn.cursor(row_factory=dict_row) as cursor:
        tables = cursor.execute(_TABLES_QUERY, {"role": REQUEST_ROLE}).fetchall()
    for rel in tables:
        name = str(rel["relname"])
        enabled, forced = bool(rel["relrowsecurity"]), bool(rel["relforcerowsecurity"])
        granted = [cmd for cmd in ("select", "insert", "update", "delete") if rel[f"can_{cmd}"]]
        covered = set(rel["policy_commands"])
        unguarded = [c for c in granted if c not in covered and "all" not in covered]
        table = TableReport(name, enabled, forced, list(rel["policies"]), granted, unguarded)
        report.tables.append(table)
        if not enabled:
            report.problems.append(f"table {name}: row-level security is not enabled")
        if not forced:
            report.problems.append(f"table {name}: row-level security is not forced")
        for command in unguarded:
            report.problems.append(
                f"table {name}: {command} is granted to {REQUEST_ROLE} without a permissive policy"
            )
    if not report.tables:
        report.problems.append("no table with a user_id column found: migrations not applied?")
    return report
