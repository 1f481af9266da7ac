-- One database per service (and the console's, for its sessions): services own their data and
-- never read another's tables.
--
-- The postgres image runs this once, on an empty data directory, as POSTGRES_USER (opora).
-- On an existing server run it as a superuser after creating the role:
--   CREATE ROLE opora LOGIN PASSWORD '...';
--   psql -v ON_ERROR_STOP=1 -f deploy/postgres/init.sql
-- It is idempotent (psql's \gexec creates only the missing databases).

SELECT format('CREATE DATABASE %I OWNER opora', name)
FROM unnest(ARRAY['opora_registry', 'opora_referrals', 'opora_raids', 'opora_notifications', 'opora_console']) AS name
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = name)
\gexec

-- Only the owner connects; other roles on a shared server do not.
REVOKE ALL ON DATABASE opora_registry FROM PUBLIC;
REVOKE ALL ON DATABASE opora_referrals FROM PUBLIC;
REVOKE ALL ON DATABASE opora_raids FROM PUBLIC;
REVOKE ALL ON DATABASE opora_notifications FROM PUBLIC;
REVOKE ALL ON DATABASE opora_console FROM PUBLIC;
