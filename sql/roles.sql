-- Least-privilege roles for harvester on PostgreSQL (idempotent: safe to run again).
--
--   psql "postgresql://admin@host/harvester" -f sql/roles.sql \
--        [-v reader_role=harvester_reader] [-v writer_role=harvester_writer] \
--        [-v owner_role=harvester_owner] [-v schema=public]
--
-- Run it as a superuser (or a role with CREATEROLE that is a member of owner_role), in
-- the harvester database, AFTER `harvester migrate` created the tables. It creates two
-- NOLOGIN group roles; give them to login users with `GRANT harvester_reader TO alice;`.
--
--   reader_role  analysts and dashboards: SELECT on every table and view of the schema,
--                including tables and views that later migrations create (default
--                privileges of owner_role). Nothing else: no INSERT/UPDATE/DELETE/DDL.
--   writer_role  `harvester sync` and `harvester run`: SELECT, INSERT, UPDATE on the
--                tables (rows are never deleted, so no DELETE), USAGE on the sequences,
--                SELECT on alembic_version (the schema check). No DDL.
--   owner_role   `harvester migrate` only: owns the tables and views, so it needs CREATE
--                on the schema (and is the role the default privileges are declared for).
--                Default: the role running this script. Run migrations as this role:
--                `HARVESTER_DATABASE_URL=postgresql://harvester_owner@host/harvester
--                harvester migrate`; run the daemon as a member of writer_role.
--
-- Advisory locks (one writer per gateway) need no grant.

\set ON_ERROR_STOP on
\if :{?reader_role}
\else
  \set reader_role harvester_reader
\endif
\if :{?writer_role}
\else
  \set writer_role harvester_writer
\endif
\if :{?owner_role}
\else
  SELECT current_user AS owner_role \gset
\endif
\if :{?schema}
\else
  \set schema public
\endif

SELECT format('CREATE ROLE %I NOLOGIN', :'reader_role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'reader_role') \gexec
SELECT format('CREATE ROLE %I NOLOGIN', :'writer_role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'writer_role') \gexec

BEGIN;

-- Nobody but the owner creates objects in the schema.
REVOKE CREATE ON SCHEMA :"schema" FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA :"schema" TO :"owner_role";
GRANT USAGE ON SCHEMA :"schema" TO :"reader_role", :"writer_role";

-- Reader: SELECT on every table and view, now and later.
GRANT SELECT ON ALL TABLES IN SCHEMA :"schema" TO :"reader_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA :"schema"
    GRANT SELECT ON TABLES TO :"reader_role";

-- Writer: what the harvester does at run time, now and for tables later migrations add.
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA :"schema" TO :"writer_role";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA :"schema" TO :"writer_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA :"schema"
    GRANT SELECT, INSERT, UPDATE ON TABLES TO :"writer_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA :"schema"
    GRANT USAGE, SELECT ON SEQUENCES TO :"writer_role";

COMMIT;
