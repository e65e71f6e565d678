-- Nobody but the schema owner may create objects in schema public: a runtime role that could
-- create a table would own it, and what it owns row-level security does not bind.
-- PostgreSQL 15 revokes this by default; older servers grant it to PUBLIC.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1
        FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
        WHERE n.nspname = 'public' AND a.grantee = 0 AND a.privilege_type = 'CREATE'
    ) THEN
        IF pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'public'), 'USAGE') THEN
            REVOKE CREATE ON SCHEMA public FROM PUBLIC;
        ELSE
            RAISE EXCEPTION 'PUBLIC may create objects in schema public; as a superuser run: REVOKE CREATE ON SCHEMA public FROM PUBLIC';
        END IF;
    END IF;
END
$$;
