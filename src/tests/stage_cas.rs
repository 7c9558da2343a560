//! In-process tests of `stage_cas`; pgrx runs them from the SQL schema `tests`.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::*;

    #[pg_test]
    fn a_cas_applies_only_from_the_expected_stage() {
        tasks("text", &[(1, "queued")]);
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('1', 'queued', 'merged')"),
            "true|applied|"
        );
        assert_eq!(stage_of(1), "merged");
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('1', 'queued', 'rolled_back')"),
            "false|stage_mismatch|merged",
            "a lost race changes nothing and says what the stage is"
        );
        assert_eq!(stage_of(1), "merged");
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('404', 'queued', 'merged')"),
            "false|not_found|"
        );
    }

    #[pg_test]
    fn a_cas_with_a_token_needs_the_lease() {
        tasks("text", &[(1, "queued")]);
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('1', 'queued', 'merged', 99)"),
            "false|not_held|",
            "a token this item never had is a mistake, not a lost race"
        );
        assert_eq!(stage_of(1), "queued", "nothing written without the lease");
        let token = token_of("1", "monitor", "boot-a");
        assert_eq!(
            cas(&format!(
                "orch_lease.update_task_stage_cas('1', 'queued', 'merged', {token})"
            )),
            "true|applied|"
        );
        assert_eq!(
            count("orch_lease.transition_lease"),
            1,
            "update_task_stage_cas keeps the lease"
        );
    }

    #[pg_test]
    fn commit_applies_and_releases_in_one_step() {
        tasks("text", &[(1, "queued")]);
        let token = token_of("1", "monitor", "boot-a");
        assert_eq!(
            cas(&format!(
                "orch_lease.commit_stage_cas('1', {token}, 'queued', 'merged')"
            )),
            "true|applied|"
        );
        assert_eq!(stage_of(1), "merged");
        assert_eq!(count("orch_lease.transition_lease"), 0);
    }

    #[pg_test]
    fn commit_releases_the_lease_whatever_the_cas_outcome() {
        tasks("text", &[(1, "merged")]);
        let token = token_of("1", "monitor", "boot-a");
        assert_eq!(
            cas(&format!(
                "orch_lease.commit_stage_cas('1', {token}, 'queued', 'merged')"
            )),
            "false|stage_mismatch|merged"
        );
        assert_eq!(
            count("orch_lease.transition_lease"),
            0,
            "the attempt is over: lease released"
        );
    }

    #[pg_test]
    fn commit_with_a_lost_lease_writes_nothing() {
        tasks("text", &[(1, "queued")]);
        let old = token_of("1", "monitor", "boot-a");
        run(&format!(
            "SELECT orch_lease.transition_lease_force_release('1', {old})"
        ));
        let new = token_of("1", "reaper", "boot-b");
        assert_eq!(
            cas(&format!(
                "orch_lease.commit_stage_cas('1', {old}, 'queued', 'merged')"
            )),
            "false|lease_lost|"
        );
        assert_eq!(stage_of(1), "queued");
        assert_eq!(
            one::<i64>("SELECT token FROM orch_lease.transition_lease"),
            Some(new),
            "the new lease stays"
        );
        assert_eq!(
            cas(&format!(
                "orch_lease.commit_stage_cas('1', {new}, 'queued', 'merged')"
            )),
            "true|applied|"
        );
    }

    #[pg_test]
    fn a_null_token_commit_is_refused_while_on() {
        tasks("text", &[(1, "queued")]);
        assert_error(
            "SELECT orch_lease.commit_stage_cas('1', NULL, 'queued', 'merged')",
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "token must not be NULL",
        );
        assert_eq!(stage_of(1), "queued", "nothing written");
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('1', 'queued', 'merged')"),
            "true|applied|",
            "the write without a lease, by name"
        );
    }

    #[pg_test]
    fn enum_stages_are_checked_against_the_enum() {
        run("CREATE TYPE public.task_stage AS ENUM ('queued', 'merged', 'rolled_back')");
        tasks("public.task_stage", &[(1, "queued")]);
        assert_error(
            "SELECT orch_lease.update_task_stage_cas('1', 'queued', 'mergd')",
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            "new_stage: invalid input value for enum task_stage: \"mergd\"",
        );
        assert_error(
            "SELECT orch_lease.update_task_stage_cas('1', 'bogus', 'merged')",
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            "expected_stage: invalid input value",
        );
        assert_error(
            "SELECT orch_lease.update_task_stage_cas('one', 'queued', 'merged')",
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            "task_id: invalid input syntax for type bigint",
        );
        assert_eq!(stage_of(1), "queued");
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('1', 'queued', 'rolled_back')"),
            "true|applied|"
        );
    }

    #[pg_test]
    fn a_bad_commit_keeps_the_lease() {
        run("CREATE TYPE public.task_stage AS ENUM ('queued', 'merged')");
        tasks("public.task_stage", &[(1, "queued")]);
        let token = token_of("1", "monitor", "boot-a");
        assert_error(
            &format!("SELECT orch_lease.commit_stage_cas('1', {token}, 'queued', 'nope')"),
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            "new_stage",
        );
        assert_eq!(
            count("orch_lease.transition_lease"),
            1,
            "bad input changes nothing"
        );
    }

    #[pg_test]
    fn varchar_stages_and_custom_column_names_work() {
        run("CREATE SCHEMA \"App Schema\"");
        run("CREATE TABLE \"App Schema\".\"Job\" (\"Job Id\" text PRIMARY KEY, \"Phase\" varchar(20))");
        run("INSERT INTO \"App Schema\".\"Job\" VALUES ('a', 'new')");
        run("SELECT orch_lease.register_task_table('\"App Schema\".\"Job\"', 'Job Id', 'Phase')");
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('a', 'new', 'built')"),
            "true|applied|"
        );
        assert_eq!(
            one::<String>("SELECT \"Phase\"::text FROM \"App Schema\".\"Job\""),
            Some("built".into())
        );
        assert_error(
            "SELECT orch_lease.update_task_stage_cas('a', 'built', repeat('x', 30))",
            PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            "too long",
        );
    }

    #[pg_test]
    fn registration_validates_the_table_and_columns() {
        use PgSqlErrorCode::*;
        run("CREATE TABLE public.t (id int PRIMARY KEY, stage text, n int)");
        run("CREATE VIEW public.v AS SELECT * FROM public.t");
        let register = "SELECT orch_lease.register_task_table";
        assert_error(
            &format!("{register}('public.t', 'nope')"),
            ERRCODE_UNDEFINED_COLUMN,
            "id_column: column \"nope\"",
        );
        assert_error(
            &format!("{register}('public.t', 'id', 'nope')"),
            ERRCODE_UNDEFINED_COLUMN,
            "stage_column",
        );
        assert_error(
            &format!("{register}('public.t', 'id', 'n')"),
            ERRCODE_DATATYPE_MISMATCH,
            "must be text, varchar or an enum",
        );
        assert_error(
            &format!("{register}('public.v')"),
            ERRCODE_WRONG_OBJECT_TYPE,
            "is not a table",
        );
        assert_error(
            &format!("{register}(NULL)"),
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "task_table must not be NULL",
        );
        assert_error(
            &format!("{register}('public.missing')"),
            ERRCODE_UNDEFINED_TABLE,
            "does not exist",
        );
        assert_eq!(count("orch_lease.task_table"), 0);
        run(&format!("{register}('public.t')"));
        assert_eq!(count("orch_lease.task_table"), 1);
    }

    #[pg_test]
    fn an_id_type_with_two_spellings_for_one_value_is_refused() {
        // numeric 1 = 1.0, bpchar 'a' = 'a  ', float8 0 = -0: two keys, one row. (red-team finding F2)
        let mut id_types = vec!["numeric", "char(8)", "float8", "timestamptz"];
        // A case-insensitive collation, where the server was built with ICU (not every test build is).
        let icu = crate::races::subtransaction(|| {
            Spi::run("CREATE COLLATION public.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
        });
        if matches!(icu, Ok(Ok(()))) {
            id_types.push("text COLLATE public.ci");
        }
        for id_type in id_types {
            run("DROP TABLE IF EXISTS public.odd");
            run(&format!(
                "CREATE TABLE public.odd (id {id_type} PRIMARY KEY, stage text)"
            ));
            assert_error(
                "SELECT orch_lease.register_task_table('public.odd')",
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                "must be smallint, integer, bigint, uuid, or text or varchar with a deterministic collation",
            );
        }
        run("CREATE DOMAIN public.task_id AS bigint CHECK (VALUE > 0)");
        run("DROP TABLE public.odd");
        run("CREATE TABLE public.odd (id public.task_id PRIMARY KEY, stage text)");
        run("SELECT orch_lease.register_task_table('public.odd')");
        assert_eq!(
            one::<String>("SELECT orch_lease.work_item_key('+007')"),
            Some("7".into()),
            "a domain over bigint keys as bigint"
        );
        // DDL after registration is checked when the description is renewed.
        run("ALTER TABLE public.odd DROP CONSTRAINT odd_pkey");
        assert_error(
            "SELECT orch_lease.work_item_key('7')",
            PgSqlErrorCode::ERRCODE_INVALID_COLUMN_REFERENCE,
            "is not unique by itself",
        );
    }

    #[pg_test]
    fn a_cas_without_a_registered_table_says_what_to_do() {
        assert_error(
            "SELECT orch_lease.update_task_stage_cas('1', 'a', 'b')",
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "no task table is registered",
        );
        tasks("text", &[(1, "queued")]);
        run("ALTER TABLE public.tasks RENAME COLUMN stage TO phase");
        assert_error(
            "SELECT orch_lease.update_task_stage_cas('1', 'a', 'b')",
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            "no longer exists",
        );
        run("DROP TABLE public.tasks");
        assert_error(
            "SELECT orch_lease.update_task_stage_cas('1', 'a', 'b')",
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            "no longer exists",
        );
    }

    #[pg_test]
    fn cas_input_errors_name_the_argument() {
        tasks("text", &[(1, "queued")]);
        use PgSqlErrorCode::*;
        assert_error(
            "SELECT orch_lease.update_task_stage_cas(NULL, 'a', 'b')",
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "task_id must not be NULL",
        );
        assert_error(
            "SELECT orch_lease.update_task_stage_cas('1', NULL, 'b')",
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "expected_stage must not be NULL",
        );
        assert_error(
            "SELECT orch_lease.commit_stage_cas('1', 1, 'a', NULL)",
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "new_stage must not be NULL",
        );
        assert_error(
            "SELECT orch_lease.commit_stage_cas('', 1, 'a', 'b')",
            ERRCODE_INVALID_PARAMETER_VALUE,
            "work_item must not be empty",
        );
        assert_eq!(stage_of(1), "queued");
    }

    #[pg_test]
    fn a_table_registered_again_with_other_column_types_gets_fresh_plans() {
        // Regression: plans were cached by SQL text alone, and the same text with other parameter
        // types reused a plan prepared for the old types.
        tasks("text", &[(1, "queued")]);
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('1', 'queued', 'merged')"),
            "true|applied|"
        );
        run("DROP TABLE public.tasks");
        run("CREATE TYPE public.phase AS ENUM ('queued', 'merged')");
        run("CREATE TABLE public.tasks (id text PRIMARY KEY, stage public.phase NOT NULL)");
        run("INSERT INTO public.tasks VALUES ('a-1', 'queued')");
        run("SELECT orch_lease.register_task_table('public.tasks')");
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('a-1', 'queued', 'merged')"),
            "true|applied|"
        );
        assert_eq!(
            one::<String>("SELECT stage::text FROM public.tasks"),
            Some("merged".into())
        );
    }
}
