-- PostgreSQL-only: schema privileges do not exist in SQLite. Kept so both backends carry the
-- same list of migrations.
SELECT 1;
