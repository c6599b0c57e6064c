-- Back to 0002's definition, byte for byte. On PostgreSQL 15 that definition refuses titles that
-- start or end with "v" (see 0004_title_trimmed_portable.sql), so there the rollback fails while
-- such a title is stored: the old schema cannot hold it.
alter table tasks drop constraint tasks_title_trimmed;

alter table tasks add constraint tasks_title_trimmed check (title = btrim(title, E' \t\n\r\f\v'));

comment on constraint tasks_title_trimmed on tasks is 'Titles are stored without leading or trailing whitespace.';
