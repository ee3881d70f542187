-- koe's databases and roles, least privilege (docs/operations.md, "Database roles").
-- psql variable `prefix` (koe) names them all:
--   <prefix>_owner            owns the three databases; the migrate jobs connect as it
--   <prefix>_<service>_app    what each service connects as: its own database only,
--                             rows in, out and changed; no DDL, no other database
--   <prefix>_feedback, _aggregator, _notifier   the databases
-- Only adds what is missing, so it is run again after a database was dropped and made
-- anew (docs/operations.md, "Replaying a topic"). Passwords are set by init-koe.sh.
\set ON_ERROR_STOP on

SELECT format('CREATE ROLE %I LOGIN', name)
FROM (VALUES (:'prefix' || '_owner'), (:'prefix' || '_feedback_app'),
             (:'prefix' || '_aggregator_app'), (:'prefix' || '_notifier_app')) AS r(name)
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) \gexec

SELECT format('CREATE DATABASE %I OWNER %I', :'prefix' || '_' || service, :'prefix' || '_owner')
FROM (VALUES ('feedback'), ('aggregator'), ('notifier')) AS s(service)
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'prefix' || '_' || service) \gexec

-- Nobody but the owner and the service's own role may even connect.
SELECT format('REVOKE ALL ON DATABASE %1$I FROM PUBLIC; '
              'GRANT CONNECT, TEMPORARY ON DATABASE %1$I TO %2$I',
              :'prefix' || '_' || service, :'prefix' || '_' || service || '_app')
FROM (VALUES ('feedback'), ('aggregator'), ('notifier')) AS s(service) \gexec

SELECT :'prefix' || '_owner' AS owner \gset
SELECT :'prefix' || '_feedback' AS db, :'prefix' || '_feedback_app' AS app \gset
\ir service-grants.sql
SELECT :'prefix' || '_aggregator' AS db, :'prefix' || '_aggregator_app' AS app \gset
\ir service-grants.sql
SELECT :'prefix' || '_notifier' AS db, :'prefix' || '_notifier_app' AS app \gset
\ir service-grants.sql
