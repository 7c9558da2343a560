-- The roles a cluster did not start with (every role but initdb's), their attributes, and every membership
-- that names one, one sorted line per fact. On a cluster where only orch_lease made roles, these are
-- orch_lease's roles: an update path and a fresh install must make the same ones.
SELECT line FROM (
    SELECT 'role ' || r.rolname || ' super=' || r.rolsuper || ' inherit=' || r.rolinherit ||
           ' createrole=' || r.rolcreaterole || ' createdb=' || r.rolcreatedb || ' login=' || r.rolcanlogin ||
           ' replication=' || r.rolreplication || ' bypassrls=' || r.rolbypassrls ||
           ' connlimit=' || r.rolconnlimit ||
           ' validuntil=' || coalesce(r.rolvaliduntil::text, '') || ' config=' || coalesce(r.rolconfig::text, '') AS line
      FROM pg_roles r WHERE r.oid >= 16384
    UNION ALL
    SELECT 'member ' || m.member::regrole || ' of ' || m.roleid::regrole || ' admin=' || m.admin_option ||
           ' grantor=' || m.grantor::regrole
      FROM pg_auth_members m WHERE m.roleid >= 16384 OR m.member >= 16384
) facts ORDER BY line;
