drop trigger tasks_write_api_json on tasks;
drop function tasks_write_api_json();
alter table tasks drop column api_json;
