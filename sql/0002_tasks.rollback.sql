drop table tasks;
drop function tasks_touch_updated_at();
