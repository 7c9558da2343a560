-- Everything that makes up the orch_lease schema, one sorted line per fact, so that an upgraded install
-- and a fresh one can be compared with diff.
SELECT line FROM (
    SELECT 'function ' || p.oid::regprocedure || ' ' || pg_get_function_result(p.oid) || ' ' ||
           pg_get_function_arguments(p.oid) || ' vol=' || p.provolatile::text || ' par=' || p.proparallel::text ||
           ' strict=' || p.proisstrict || ' secdef=' || p.prosecdef || ' config=' || coalesce(p.proconfig::text, '') ||
           ' src=' || p.prosrc AS line
      FROM pg_proc p WHERE p.pronamespace = 'orch_lease'::regnamespace
    UNION ALL
    SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ||
           ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
      FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
     WHERE c.relnamespace = 'orch_lease'::regnamespace
    UNION ALL
    SELECT 'relation ' || c.relname || ' kind=' || c.relkind::text || ' options=' || coalesce(c.reloptions::text, '')
      FROM pg_class c WHERE c.relnamespace = 'orch_lease'::regnamespace
    UNION ALL
    SELECT 'index ' || regexp_replace(indexdef, '\s+', ' ', 'g') FROM pg_indexes WHERE schemaname = 'orch_lease'
    UNION ALL
    SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid)
      FROM pg_constraint WHERE connamespace = 'orch_lease'::regnamespace
    UNION ALL
    SELECT 'view ' || viewname || ' ' || regexp_replace(definition, '\s+', ' ', 'g')
      FROM pg_views WHERE schemaname = 'orch_lease'
    UNION ALL
    SELECT 'trigger ' || tgrelid::regclass || ' ' || pg_get_triggerdef(t.oid)
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace = 'orch_lease'::regnamespace AND NOT t.tgisinternal
    UNION ALL
    SELECT 'comment ' || coalesce(c.relname, '') || ' ' || d.description
      FROM pg_description d JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
     WHERE c.relnamespace = 'orch_lease'::regnamespace
    UNION ALL
    SELECT 'type ' || t.typname FROM pg_type t
     WHERE t.typnamespace = 'orch_lease'::regnamespace AND t.typtype = 'c'
    UNION ALL
    SELECT 'comment function ' || p.oid::regprocedure || ' ' || d.description
      FROM pg_description d JOIN pg_proc p ON p.oid = d.objoid AND d.classoid = 'pg_proc'::regclass
     WHERE p.pronamespace = 'orch_lease'::regnamespace
    UNION ALL
    SELECT 'grants function ' || p.oid::regprocedure || ' ' ||
           coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(p.proacl) a), 'default')
      FROM pg_proc p WHERE p.pronamespace = 'orch_lease'::regnamespace
    UNION ALL
    SELECT 'grants relation ' || c.relname || ' ' ||
           coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(c.relacl) a), 'default')
      FROM pg_class c WHERE c.relnamespace = 'orch_lease'::regnamespace
    UNION ALL
    SELECT 'grants schema ' ||
           coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(n.nspacl) a), 'default')
      FROM pg_namespace n WHERE n.nspname = 'orch_lease'
    UNION ALL
    SELECT 'config-dump ' || unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'orch_lease'
    UNION ALL
    -- owners: the schema, every relation (tables, views, sequences, composite types), function and type
    SELECT 'owner schema ' || pg_get_userbyid(n.nspowner) FROM pg_namespace n WHERE n.nspname = 'orch_lease'
    UNION ALL
    SELECT 'owner relation ' || c.relname || ' ' || pg_get_userbyid(c.relowner)
      FROM pg_class c WHERE c.relnamespace = 'orch_lease'::regnamespace
    UNION ALL
    SELECT 'owner function ' || p.oid::regprocedure || ' ' || pg_get_userbyid(p.proowner)
      FROM pg_proc p WHERE p.pronamespace = 'orch_lease'::regnamespace
    UNION ALL
    SELECT 'owner type ' || t.typname || ' ' || pg_get_userbyid(t.typowner)
      FROM pg_type t WHERE t.typnamespace = 'orch_lease'::regnamespace
    UNION ALL
    -- column privileges
    SELECT 'grants column ' || c.relname || '.' || a.attname || ' ' ||
           (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(a.attacl) x)
      FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE c.relnamespace = 'orch_lease'::regnamespace AND a.attacl IS NOT NULL
    UNION ALL
    -- sequences: their settings, the column that owns each, and whether pg_dump dumps its state
    SELECT 'sequence ' || c.relname || ' type=' || format_type(s.seqtypid, NULL) || ' start=' || s.seqstart ||
           ' increment=' || s.seqincrement || ' min=' || s.seqmin || ' max=' || s.seqmax || ' cache=' || s.seqcache ||
           ' cycle=' || s.seqcycle ||
           ' owned_by=' || coalesce((SELECT d.refobjid::regclass || '.' || a.attname FROM pg_depend d
                                      JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                     WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                       AND d.deptype IN ('a', 'i')), '') ||
           ' config-dump=' || (c.oid = ANY ((SELECT extconfig FROM pg_extension WHERE extname = 'orch_lease')::oid[]))
      FROM pg_class c JOIN pg_sequence s ON s.seqrelid = c.oid WHERE c.relnamespace = 'orch_lease'::regnamespace
    UNION ALL
    -- every type of the schema (not only composites): its kind, and an enum's labels in order
    SELECT 'type ' || t.typname || ' kind=' || t.typtype::text || ' category=' || t.typcategory::text ||
           coalesce(' labels=' || (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e
                                   WHERE e.enumtypid = t.oid), '')
      FROM pg_type t WHERE t.typnamespace = 'orch_lease'::regnamespace
    UNION ALL
    -- type privileges (USAGE on a type is granted apart from its table's), the default spelled out: a
    -- grant revoked again leaves the default written down, which is no change
    SELECT 'grants type ' || t.typname || ' ' ||
           (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(coalesce(t.typacl, acldefault('T', t.typowner))) a)
      FROM pg_type t WHERE t.typnamespace = 'orch_lease'::regnamespace
    UNION ALL
    -- default privileges in the schema (ALTER DEFAULT PRIVILEGES): what objects made there later get
    SELECT 'default-acl ' || pg_get_userbyid(d.defaclrole) || ' ' || d.defaclobjtype::text || ' ' ||
           (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(d.defaclacl) a)
      FROM pg_default_acl d WHERE d.defaclnamespace = 'orch_lease'::regnamespace
    UNION ALL
    -- the extension's initial privileges (pg_init_privs): what pg_dump takes as the extension's own and
    -- does not dump; a site's grant recorded there is lost by a dump and restore
    SELECT 'init-privs ' || i.privtype::text || ' ' ||
           CASE i.classoid
               WHEN 'pg_proc'::regclass THEN 'function ' || i.objoid::regprocedure::text
               WHEN 'pg_class'::regclass THEN 'relation ' || i.objoid::regclass::text ||
                    coalesce('.' || (SELECT a.attname FROM pg_attribute a
                                      WHERE a.attrelid = i.objoid AND a.attnum = i.objsubid AND i.objsubid > 0), '')
               WHEN 'pg_type'::regclass THEN 'type ' || i.objoid::regtype::text
               WHEN 'pg_namespace'::regclass THEN 'schema ' || i.objoid::regnamespace::text
               ELSE i.classoid::regclass::text || ' ' || i.objoid
           END || ' ' || (SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(i.initprivs) a)
      FROM pg_init_privs i
     WHERE (i.classoid = 'pg_proc'::regclass
            AND (SELECT pronamespace FROM pg_proc WHERE oid = i.objoid) = 'orch_lease'::regnamespace)
        OR (i.classoid = 'pg_class'::regclass
            AND (SELECT relnamespace FROM pg_class WHERE oid = i.objoid) = 'orch_lease'::regnamespace)
        OR (i.classoid = 'pg_type'::regclass
            AND (SELECT typnamespace FROM pg_type WHERE oid = i.objoid) = 'orch_lease'::regnamespace)
        OR (i.classoid = 'pg_namespace'::regclass AND i.objoid = 'orch_lease'::regnamespace)
) facts ORDER BY line;
