-- depends: 0003_token_revocation
-- Titles are stored trimmed of the same whitespace on every supported PostgreSQL (15-18).
--
-- 0002 wrote the set as E' \t\n\r\f\v'. PostgreSQL before 16 has no \v escape, so on 15 the set
-- held the letter v and every title starting or ending in "v" was refused. chr(n) names the same
-- code point on every version (the database encoding must be UTF8, as it is for todo-api).
--
-- The set is Unicode's White_Space property, all 25 code points of it: U+0009-U+000D, U+0020,
-- U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000. The API trims
-- exactly these (TITLE_WHITESPACE in backend/src/todo_api/api/schemas.py), so a title the API
-- stores always passes, and the tests compare both sets over every code point.
--
-- Adding the constraint checks the existing rows. Only a client writing SQL directly could have
-- stored a title with a non-ASCII space at an end (the API always trimmed them); if one exists the
-- migration fails naming tasks_title_trimmed, and
--   select id, title from tasks where title <> btrim(title, <the set below>);
-- finds the rows to fix first.

alter table tasks drop constraint tasks_title_trimmed;

alter table tasks add constraint tasks_title_trimmed check (
    title = btrim(
        title,
        chr(9) || chr(10) || chr(11) || chr(12) || chr(13) || chr(32) || chr(133) || chr(160)
        || chr(5760) || chr(8192) || chr(8193) || chr(8194) || chr(8195) || chr(8196)
        || chr(8197) || chr(8198) || chr(8199) || chr(8200) || chr(8201) || chr(8202)
        || chr(8232) || chr(8233) || chr(8239) || chr(8287) || chr(12288)
    )
);

comment on constraint tasks_title_trimmed on tasks is
    'Titles are stored without leading or trailing whitespace: the 25 code points of Unicode White_Space (U+0009-U+000D, U+0020, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000), the set the API trims.';
