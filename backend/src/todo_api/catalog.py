"""Reading the catalogs `todo-api check` judges (see safety.py for the judging).

Every query names its columns, and its rows are read into the dataclasses below with psycopg's
class_row, never by position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg.rows import class_row

from todo_api.db import REQUEST_ROLE

COMMANDS = ("select", "insert", "update", "delete")
RowT = TypeVar("RowT")


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


@dataclass(frozen=True)
class ServerRow:
    version: str
    version_num: int


SERVER_QUERY: LiteralString = """
select current_setting('server_version') as version,
       current_setting('server_version_num')::int as version_num
"""


@dataclass(frozen=True)
class RoleRow:
    """The request role's attributes; the report lists them in this order."""

    superuser: bool
    bypassrls: bool
    can_login: bool
    inherit: bool
    createrole: bool
    createdb: bool
    login_role_can_enter: bool
    member_of_privileged_role: bool
    owned_objects: int


ROLE_QUERY: LiteralString = """
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
TABLES_QUERY: LiteralString = """
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

POLICIES_QUERY: LiteralString = """
select tablename as "table", policyname as name, lower(cmd) as command,
       permissive = 'PERMISSIVE' as permissive, roles::text[] as roles,
       qual as using_expression, with_check as check_expression
from pg_policies
where schemaname = current_schema()
order by tablename, policyname
"""

# Views and materialized views in any schema that read a user-data table, directly or through
# other views (pg_rewrite's dependencies, followed recursively).
VIEWS_QUERY: LiteralString = """
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

DEFINER_FUNCTIONS_QUERY: LiteralString = """
select p.oid::regprocedure::text as signature, pg_get_userbyid(p.proowner) as owner,
       exists (select from unnest(coalesce(p.proconfig, '{}')) s where s like 'search_path=%%')
           as search_path_pinned,
       has_function_privilege('public', p.oid, 'EXECUTE') as executable_by_public,
       has_schema_privilege(%(role)s, p.pronamespace, 'USAGE') as schema_usable_by_request_role,
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
GRANTS_QUERY: LiteralString = """
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
class TableRow:
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
        return [command for command in COMMANDS if getattr(self, f"can_{command}")]


@dataclass(frozen=True)
class ViewRow:
    name: str
    materialized: bool
    security_invoker: bool
    readable_by_request_role: bool
    user_data_tables: list[str]


@dataclass(frozen=True)
class DefinerRow:
    signature: str
    owner: str
    search_path_pinned: bool
    executable_by_public: bool
    schema_usable_by_request_role: bool
    owner_reaches_user_data: bool


# The one function every policy reads the user through (sql/0010), as the planner sees it: it
# is inlined, and so leaves the plans alone, only while it is LANGUAGE sql, not SECURITY DEFINER,
# without SET clauses and no more volatile than its body.
CURRENT_USER_FUNCTION = "todo_current_user_id"

CURRENT_USER_FUNCTION_QUERY: LiteralString = """
select p.oid::regprocedure::text as signature, l.lanname as language,
       case p.provolatile when 'i' then 'immutable' when 's' then 'stable' else 'volatile' end
           as volatility,
       p.prosecdef as security_definer, p.proconfig is not null as has_set_clause,
       p.prosrc as body
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
join pg_language l on l.oid = p.prolang
where n.nspname = current_schema() and p.pronargs = 0 and p.proname = %(function)s
"""


@dataclass(frozen=True)
class FunctionRow:
    signature: str
    language: str
    volatility: str
    security_definer: bool
    has_set_clause: bool
    body: str


@dataclass(frozen=True, order=True)
class Grant:
    """One privilege held by the request role: ("column", "tasks.title", "UPDATE")."""

    kind: str
    object: str
    privilege: str

    def __str__(self) -> str:
        return f"{self.privilege} on {self.kind} {self.object}"


# Every query may name these; psycopg passes only the ones it uses.
_PARAMETERS = {"role": REQUEST_ROLE, "function": CURRENT_USER_FUNCTION}


def read_row(
    conn: psycopg.Connection[Any], query: LiteralString, row_type: type[RowT]
) -> RowT | None:
    with conn.cursor(row_factory=class_row(row_type)) as cursor:
        return cursor.execute(query, _PARAMETERS).fetchone()


def read_rows(
    conn: psycopg.Connection[Any], query: LiteralString, row_type: type[RowT]
) -> list[RowT]:
    with conn.cursor(row_factory=class_row(row_type)) as cursor:
        return cursor.execute(query, _PARAMETERS).fetchall()
