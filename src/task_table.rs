//! The registered task table: the application's own table whose stage the CAS writes, its description
//! (cached per backend until an invalidation concerns it), and what follows from its id column's type —
//! how a value is read from text, and the one canonical key every spelling of a task id maps to.
use crate::{errors, owner, plans, rows};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, PgTryBuilder};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::{PgRelation, PgSqlErrorCode};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::rc::Rc;

extension_sql!(
    r#"
CREATE TABLE orch_lease.task_table (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    relid         regclass NOT NULL,
    id_column     name NOT NULL,
    stage_column  name NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE orch_lease.task_table IS
    'The application table whose stage the CAS writes (one per database).';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.task_table', '');
"#,
    name = "task_table_registry"
);

/// Names the application's existing table whose stage the CAS writes. The caller must own it; the id
/// column must be unique by itself and its type must have an equality operator; the stage column may be
/// text, varchar or an enum. From then on every work item is keyed by its id's canonical form.
#[pg_extern(
    volatile,
    parallel_unsafe,
    requires = ["task_table_registry", "lease_table"],
    sql = r#"
CREATE FUNCTION orch_lease.register_task_table(
    task_table regclass, id_column name DEFAULT 'id', stage_column name DEFAULT 'stage'
) RETURNS void VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'register_task_table_wrapper';
COMMENT ON FUNCTION orch_lease.register_task_table(regclass, name, name) IS
    'Registers the application table whose stage the CAS writes: the caller must own it, and its id column must be unique.';
"#
)]
fn register_task_table(
    task_table: Option<PgRelation>,
    id_column: Option<&CStr>,
    stage_column: Option<&CStr>,
) {
    let table = errors::present("task_table", task_table);
    let id_column = errors::present("id_column", id_column).to_string_lossy();
    let stage_column = errors::present("stage_column", stage_column).to_string_lossy();
    let qualified = format!("{}.{}", table.namespace(), table.name());
    if !(table.is_table() || table.is_partitioned_table()) {
        errors::raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("orch_lease: \"{qualified}\" is not a table"),
        );
    }
    if unsafe { pg_sys::IsCatalogRelationOid(table.oid()) } {
        errors::raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("orch_lease: \"{qualified}\" is a system catalog, not an application table"),
        );
    }
    if !caller_owns(table.oid()) {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("orch_lease: must be the owner of \"{qualified}\" to register it"),
            "The owner of the task table (or a member of its owning role) registers it.",
            None,
        );
    }
    let column = |argument: &str, column: &str| -> (i16, pg_sys::Oid) {
        let name = CString::new(column).expect("a name holds no NUL byte");
        let attnum = unsafe { pg_sys::get_attnum(table.oid(), name.as_ptr()) };
        if attnum <= 0 {
            errors::raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!(
                    "orch_lease: {argument}: column \"{column}\" of \"{qualified}\" does not exist"
                ),
            );
        }
        (attnum, unsafe { pg_sys::get_atttype(table.oid(), attnum) })
    };
    let (id_attnum, id_type) = column("id_column", &id_column);
    let (_, stage_type) = column("stage_column", &stage_column);
    let base = unsafe { pg_sys::getBaseType(stage_type) };
    if !(unsafe { pg_sys::type_is_enum(base) }
        || base == pg_sys::TEXTOID
        || base == pg_sys::VARCHAROID)
    {
        errors::raise(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!(
                "orch_lease: stage_column: column \"{stage_column}\" of \"{qualified}\" must be text, \
                 varchar or an enum"
            ),
        );
    }
    check_id_column(table.oid(), id_attnum, &qualified);
    let held = owner::as_owner(|| {
        Spi::connect(|client| {
            plans::run(
                client,
                "SELECT work_item FROM orch_lease.transition_lease",
                &[],
            )
            .map(|lease| rows::column::<String>(&lease, "work_item"))
            .collect::<Vec<String>>()
        })
    });
    // Leases held now must already be keyed the way the new id type keys them.
    for item in held {
        let key = canonical("work_item", &item, id_type);
        if key != item {
            errors::raise_hinted(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("orch_lease: a lease is held on work item \"{item}\", which \"{qualified}\" keys as \"{key}\""),
                "Release or force-release the leases on such work items, then register again.",
                None,
            );
        }
    }
    // The table goes in as a regclass, and the new row's own registered_at is kept, so that on Citus
    // (docs/scale-out.md), where the registry is a reference table, each node gets the table by name (its
    // own oid) and the statement calls no volatile function in DO UPDATE.
    // SAFETY: an oid is a regclass's datum.
    let relid = unsafe { DatumWithOid::new(table.oid(), pg_sys::REGCLASSOID) };
    owner::as_owner(|| {
        Spi::connect(|client| {
            plans::run(
                client,
                "INSERT INTO orch_lease.task_table (relid, id_column, stage_column) VALUES ($1, $2::name, $3::name)
                 ON CONFLICT (singleton) DO UPDATE
                    SET relid = EXCLUDED.relid, id_column = EXCLUDED.id_column,
                        stage_column = EXCLUDED.stage_column, registered_at = EXCLUDED.registered_at",
                &[relid, id_column.as_ref().into(), stage_column.as_ref().into()],
            );
        });
        forget_everywhere("orch_lease.task_table");
    });
}

/// Id types whose text form is canonical under their equality: one value, one spelling (as their
/// output function writes it, whatever the session's settings). Not numeric (1 = 1.0), bpchar (trailing
/// blanks), floats (0 = -0), time types (time zone, DateStyle), citext or nondeterministic collations.
const KEYABLE_IDS: [pg_sys::Oid; 6] = [
    pg_sys::INT2OID,
    pg_sys::INT4OID,
    pg_sys::INT8OID,
    pg_sys::UUIDOID,
    pg_sys::TEXTOID,
    pg_sys::VARCHAROID,
];

/// The id column must key a task by one spelling and find one row: a keyable type (a domain over one
/// is fine), a deterministic collation, and a unique index on the column alone. Checked when the table
/// is registered, and again whenever its description is renewed (after DDL on it).
fn check_id_column(relid: pg_sys::Oid, attnum: i16, qualified: &str) {
    let (mut id_type, mut typmod, mut collation) = (pg_sys::InvalidOid, 0, pg_sys::InvalidOid);
    unsafe {
        pg_sys::get_atttypetypmodcoll(relid, attnum, &mut id_type, &mut typmod, &mut collation)
    };
    let base = unsafe { pg_sys::getBaseType(id_type) };
    let deterministic = collation == pg_sys::InvalidOid
        || unsafe { pg_sys::get_collation_isdeterministic(collation) };
    if !KEYABLE_IDS.contains(&base) || !deterministic {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!(
                "orch_lease: id_column: the id column of \"{qualified}\" must be smallint, integer, bigint, \
                 uuid, or text or varchar with a deterministic collation"
            ),
            "Two spellings of one id must be one lease: orch_lease keys work items by the id's text, which \
             these types write one way only.",
            None,
        );
    }
    equality_operator("id_column", id_type);
    let unique = owner::as_owner(|| {
        Spi::connect(|client| {
            let unique = plans::run(
                client,
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_index i
                                 WHERE i.indrelid = $1 AND i.indisunique AND i.indimmediate
                                   AND i.indnkeyatts = 1 AND i.indkey[0] = $2
                                   AND i.indpred IS NULL AND i.indexprs IS NULL) AS unique",
                &[relid.into(), attnum.into()],
            );
            rows::column::<bool>(&unique.first(), "unique")
        })
    });
    if !unique {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_INVALID_COLUMN_REFERENCE,
            format!("orch_lease: id_column: the id column of \"{qualified}\" is not unique by itself"),
            "The CAS must find one row per id: give the id column a primary key or a unique constraint.",
            None,
        );
    }
}

/// Does the caller own the table (or belong to the role that does)?
pub fn caller_owns(relid: pg_sys::Oid) -> bool {
    let table = unsafe { PgRelation::open(relid) };
    let relowner = unsafe { (*table.rd_rel).relowner };
    unsafe { pg_sys::has_privs_of_role(owner::caller(), relowner) }
}

/// The key orch_lease uses for this work item: with a task table registered, the id column's canonical
/// form of it (every spelling of one id is one key); otherwise the text itself.
#[pg_extern(stable, parallel_unsafe, requires = ["task_table_registry"])]
fn work_item_key(work_item: Option<&str>) -> String {
    key("work_item", errors::required("work_item", work_item))
}

/// The key of `work_item`, read as the id of the registered task table when there is one. An id the
/// id type rejects is an error naming `argument`, with the type's SQLSTATE (22P02 for bad syntax).
pub fn key(argument: &'static str, work_item: &str) -> String {
    match registered() {
        Some(table) => canonical(argument, work_item, table.id_type),
        None => work_item.to_string(),
    }
}

/// `text` read by the type's input function and written back by its output function.
fn canonical(argument: &'static str, text: &str, type_oid: pg_sys::Oid) -> String {
    let base = unsafe { pg_sys::getBaseType(type_oid) };
    output(typed(argument, text, base))
}

/// Makes every backend's cached task-table description stale from our commit on, by invalidating one
/// of the relations it is read from.
pub fn forget_everywhere(relation: &str) {
    let oid = Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[relation.into()])
        .ok()
        .flatten()
        .unwrap_or_else(|| errors::internal("missing relation", relation, ""));
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(oid) };
}

/// The registered task table, described.
pub struct TaskTable {
    /// The relations this description is read from: an invalidation of any of them renews it.
    sources: [pg_sys::Oid; 4],
    pub relid: pg_sys::Oid,
    /// The task table, schema-qualified and quoted, and its columns' plain names.
    pub qualified: String,
    pub id_column: String,
    pub stage_column: String,
    /// The allowed transitions (expected, new), when a stage graph is registered.
    pub graph: Option<HashSet<(String, String)>>,
    /// The stages no transition leaves.
    pub terminal: HashSet<String>,
    pub id_type: pg_sys::Oid,
    pub stage_type: pg_sys::Oid,
    /// `UPDATE … SET stage = $3 WHERE id = $1 AND stage = $2`
    pub compare_and_set: String,
    /// `SELECT stage … WHERE id = $1`
    pub read_stage: String,
    /// `UPDATE … SET stage = $2 WHERE id = $1`: the kill-switch-off write
    pub unconditional: String,
}

impl TaskTable {
    /// May a CAS go from `expected` to `new`? Never out of a terminal stage; with a graph, only along it.
    pub fn allows(&self, expected: &str, new: &str) -> bool {
        !self.terminal.contains(expected)
            && self
                .graph
                .as_ref()
                .is_none_or(|graph| graph.contains(&(expected.to_string(), new.to_string())))
    }
}

thread_local! {
    /// The task table as last described (None: nothing registered), with the invalidation generation
    /// it was described in.
    static TASK_TABLE: RefCell<Option<(u64, Option<Rc<TaskTable>>)>> = const { RefCell::new(None) };
    /// Bumped by every relcache invalidation that concerns the registry or the task table.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    /// Set when the description was read with a transaction snapshot (REPEATABLE READ, SERIALIZABLE):
    /// it may predate a registration committed meanwhile, so it is forgotten when that transaction ends.
    static SNAPSHOT_BOUND: Cell<bool> = const { Cell::new(false) };
}

/// Registers the callbacks that keep the cached description honest: any DDL on the task table (a
/// renamed column, a dropped table or index), a renamed schema and every registration invalidate it,
/// and so does the end of a transaction that described it from its own snapshot.
pub fn init() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(forget_task_table), pg_sys::Datum::from(0));
        // A renamed schema changes the task table's qualified name without touching its relcache entry.
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(forget_on_schema_change),
            pg_sys::Datum::from(0),
        );
        pg_sys::RegisterXactCallback(Some(forget_snapshot_bound), std::ptr::null_mut());
    }
}

fn forget() {
    GENERATION.with(|generation| generation.set(generation.get() + 1));
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_task_table(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let concerned = TASK_TABLE.with(|cached| match cached.try_borrow() {
        Ok(cached) => match cached.as_ref() {
            Some((_, Some(table))) => relid == pg_sys::InvalidOid || table.sources.contains(&relid),
            _ => true,
        },
        Err(_) => true,
    });
    if concerned {
        forget();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_on_schema_change(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    forget();
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_snapshot_bound(
    _event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    if SNAPSHOT_BOUND.replace(false) {
        forget();
    }
}

/// The registered task table, or None; described once and cached until an invalidation concerns it.
pub fn registered() -> Option<Rc<TaskTable>> {
    let generation = GENERATION.with(Cell::get);
    let cached = TASK_TABLE.with(|cached| cached.borrow().clone());
    if let Some((described_in, table)) = cached {
        if described_in == generation {
            return table;
        }
    }
    let table = describe_task_table().map(Rc::new);
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        SNAPSHOT_BOUND.set(true);
    }
    TASK_TABLE.with(|cached| *cached.borrow_mut() = Some((generation, table.clone())));
    table
}

/// The registered task table; an error with a hint when there is none.
pub fn task_table() -> Rc<TaskTable> {
    registered().unwrap_or_else(|| {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "orch_lease: no task table is registered".into(),
            "Call orch_lease.register_task_table('your_tasks'::regclass, 'id', 'stage') first.",
            None,
        )
    })
}

/// What the registry says, read as the extension's owner.
struct Registration {
    sources: [pg_sys::Oid; 4],
    id_column: String,
    stage_column: String,
    graph: Option<HashSet<(String, String)>>,
    terminal: HashSet<String>,
}

fn read_registration() -> Option<Registration> {
    owner::as_owner(|| {
        Spi::connect(|client| {
            let row = plans::run(
                client,
                "SELECT tableoid AS registry, relid::oid AS relid, id_column::text AS id_column,
                        stage_column::text AS stage_column,
                        'orch_lease.stage_transition'::regclass::oid AS transitions,
                        'orch_lease.terminal_stage'::regclass::oid AS terminals,
                        (SELECT array_agg(from_stage) FROM orch_lease.stage_transition) AS froms,
                        (SELECT array_agg(to_stage) FROM orch_lease.stage_transition) AS tos,
                        ARRAY(SELECT stage FROM orch_lease.terminal_stage) AS terminal
                   FROM orch_lease.task_table",
                &[],
            );
            (!row.is_empty()).then(|| {
                use rows::{column, nullable};
                let row = row.first();
                let oid = |name| column::<pg_sys::Oid>(&row, name);
                let froms: Option<Vec<String>> = nullable(&row, "froms");
                let tos: Option<Vec<String>> = nullable(&row, "tos");
                Registration {
                    sources: [
                        oid("registry"),
                        oid("relid"),
                        oid("transitions"),
                        oid("terminals"),
                    ],
                    id_column: column(&row, "id_column"),
                    stage_column: column(&row, "stage_column"),
                    graph: froms
                        .zip(tos)
                        .map(|(froms, tos)| froms.into_iter().zip(tos).collect()),
                    terminal: column::<Vec<String>>(&row, "terminal")
                        .into_iter()
                        .collect(),
                }
            })
        })
    })
}

fn describe_task_table() -> Option<TaskTable> {
    let Registration {
        sources,
        id_column,
        stage_column,
        graph,
        terminal,
    } = read_registration()?;
    // Names and types come from the catalog caches; DDL on the task table invalidates this description,
    // so a renamed or dropped table or column is noticed at once.
    let relid = sources[1];
    let reregister = "The task table changed since it was registered: call orch_lease.register_task_table again.";
    let (Some(table), Some(schema)) = (catalog_name(unsafe { pg_sys::get_rel_name(relid) }), {
        let namespace = unsafe { pg_sys::get_rel_namespace(relid) };
        catalog_name(unsafe { pg_sys::get_namespace_name(namespace) })
    }) else {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!(
                "orch_lease: the registered task table (oid {}) no longer exists",
                relid.to_u32()
            ),
            reregister,
            None,
        );
    };
    let column_type = |column: &str| {
        let name = CString::new(column).expect("a column name holds no NUL byte");
        let attnum = unsafe { pg_sys::get_attnum(relid, name.as_ptr()) };
        (attnum > 0).then(|| unsafe { pg_sys::get_atttype(relid, attnum) })
    };
    let (Some(id_type), Some(stage_type)) = (column_type(&id_column), column_type(&stage_column))
    else {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("orch_lease: column {id_column} or {stage_column} of the task table {schema}.{table} no longer exists"),
            reregister,
            None,
        );
    };
    let qualified = format!("{}.{}", quote_identifier(&schema), quote_identifier(&table));
    let id_attnum = {
        let name = CString::new(id_column.as_str()).expect("a column name holds no NUL byte");
        unsafe { pg_sys::get_attnum(relid, name.as_ptr()) }
    };
    check_id_column(relid, id_attnum, &qualified);
    let (id, stage) = (
        quote_identifier(&id_column),
        quote_identifier(&stage_column),
    );
    // Operators spelled out with their schema: nothing in the caller's search_path stands in for them.
    let id_eq = equality_operator("id_column", id_type);
    let stage_eq = equality_operator("stage_column", stage_type);
    Some(TaskTable {
        sources,
        relid,
        compare_and_set: format!(
            "UPDATE {qualified} SET {stage} = $3 WHERE {id} {id_eq} $1 AND {stage} {stage_eq} $2 RETURNING true"
        ),
        read_stage: format!("SELECT {stage} FROM {qualified} WHERE {id} {id_eq} $1"),
        unconditional: format!(
            "UPDATE {qualified} SET {stage} = $2 WHERE {id} {id_eq} $1 RETURNING true"
        ),
        qualified,
        id_column,
        stage_column,
        graph,
        terminal,
        id_type,
        stage_type,
    })
}

/// The type's default equality operator, written `OPERATOR(schema.name)`.
fn equality_operator(argument: &str, type_oid: pg_sys::Oid) -> String {
    let entry = unsafe { pg_sys::lookup_type_cache(type_oid, pg_sys::TYPECACHE_EQ_OPR as i32) };
    let operator = unsafe { (*entry).eq_opr };
    if operator == pg_sys::InvalidOid {
        errors::raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_FUNCTION,
            format!("orch_lease: {argument}: its type has no default equality operator"),
        );
    }
    let name = catalog_name(unsafe { pg_sys::get_opname(operator) }).unwrap_or_default();
    let schema = operator_schema(operator);
    format!("OPERATOR({}.{name})", quote_identifier(&schema))
}

/// The schema an operator lives in.
fn operator_schema(operator: pg_sys::Oid) -> String {
    let tuple = unsafe {
        pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::OPEROID as i32, operator.into())
    };
    if tuple.is_null() {
        errors::internal("missing operator", &operator.to_u32().to_string(), "");
    }
    let namespace = unsafe {
        (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_operator>(tuple)).oprnamespace
    };
    unsafe { pg_sys::ReleaseSysCache(tuple) };
    catalog_name(unsafe { pg_sys::get_namespace_name(namespace) }).unwrap_or_default()
}

/// A name the catalog cache handed back (NULL when the object is gone).
fn catalog_name(name: *mut std::ffi::c_char) -> Option<String> {
    (!name.is_null()).then(|| {
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    })
}

/// Converts `text` to a value of the column type `type_oid` with that type's own input function, so a
/// stage the enum lacks or an id the id type rejects fails with the type's SQLSTATE, naming `argument`.
pub fn typed(argument: &'static str, text: &str, type_oid: pg_sys::Oid) -> Typed {
    let text = CString::new(text).expect("PostgreSQL text holds no NUL byte");
    let datum = PgTryBuilder::new(|| unsafe {
        let (mut input, mut io_param) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
        pg_sys::getTypeInputInfo(type_oid, &mut input, &mut io_param);
        pg_sys::OidInputFunctionCall(input, text.as_ptr().cast_mut(), io_param, -1)
    })
    .catch_others(|error| match error {
        pg_sys::panic::CaughtError::PostgresError(report) => errors::raise(
            report.sql_error_code(),
            format!("orch_lease: {argument}: {}", report.message()),
        ),
        other => other.rethrow(),
    })
    .execute();
    Typed(datum, type_oid)
}

/// A value's text, by its type's output function.
pub fn output(value: Typed) -> String {
    datum_text(value.0, value.1)
}

/// The text of a datum of type `type_oid`, by the type's output function.
pub fn datum_text(datum: pg_sys::Datum, type_oid: pg_sys::Oid) -> String {
    let (mut function, mut varlena) = (pg_sys::InvalidOid, false);
    unsafe {
        pg_sys::getTypeOutputInfo(type_oid, &mut function, &mut varlena);
        let text = pg_sys::OidOutputFunctionCall(function, datum);
        let owned = CStr::from_ptr(text).to_string_lossy().into_owned();
        pg_sys::pfree(text.cast());
        owned
    }
}

/// A value converted to a column's type, allocated in the function's memory context.
#[derive(Clone, Copy)]
pub struct Typed(pg_sys::Datum, pg_sys::Oid);

impl Typed {
    pub fn arg(self) -> DatumWithOid<'static> {
        // SAFETY: the datum is a value of that type, alive for the whole function call.
        unsafe { DatumWithOid::new(self.0, self.1) }
    }
}

extension_sql!(
    r#"
COMMENT ON FUNCTION orch_lease.work_item_key(text) IS
    'The key orch_lease uses for a work item: the registered id type''s canonical form of it (every spelling of one id is one key).';
"#,
    name = "task_table_comments",
    requires = [work_item_key]
);
