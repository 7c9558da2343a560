//! Statements prepared once per backend and kept: every hot path runs through `run`.
use crate::{error_context, errors};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};
use pgrx::PgOid;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    /// Plans by SQL text, each with the parameter types it was prepared for: the same text can come
    /// with other types (a task table registered again with other column types). An `Rc` lets a plan
    /// run while the map is free for re-entrant callers (a trigger on the task table may call orch_lease).
    static PLANS: RefCell<HashMap<String, Vec<Prepared>>> = RefCell::new(HashMap::new());
}

/// A kept plan and the parameter types it was prepared for.
type Prepared = (Vec<pg_sys::Oid>, Rc<OwnedPreparedStatement>);

/// Runs `sql` through a plan prepared on first use and cached for the backend's life (PostgreSQL's
/// plan cache still re-plans it after DDL). Parameter types come from `args`. Plans are prepared as
/// read-write so that at READ COMMITTED each statement takes a fresh snapshot.
pub fn run<'conn>(
    client: &SpiClient<'conn>,
    sql: &str,
    args: &[DatumWithOid],
) -> SpiTupleTable<'conn> {
    let same_types =
        |types: &[pg_sys::Oid]| types.iter().copied().eq(args.iter().map(|arg| arg.oid()));
    let cached = PLANS.with(|plans| {
        let plans = plans.borrow();
        let prepared = plans.get(sql)?;
        prepared
            .iter()
            .find(|(types, _)| same_types(types))
            .map(|(_, plan)| Rc::clone(plan))
    });
    let plan = cached.unwrap_or_else(|| {
        let types: Vec<pg_sys::Oid> = args.iter().map(|arg| arg.oid()).collect();
        let oids: Vec<PgOid> = types.iter().map(|oid| PgOid::from(*oid)).collect();
        let plan = Rc::new(
            client
                .prepare_mut(sql, &oids)
                .unwrap_or_else(|error| errors::internal("cannot prepare", sql, error))
                .keep(),
        );
        PLANS.with(|plans| {
            plans
                .borrow_mut()
                .entry(sql.to_owned())
                .or_default()
                .push((types, Rc::clone(&plan)))
        });
        plan
    });
    error_context::keeping_context(|| client.select(&*plan, None, args))
        .unwrap_or_else(|error| errors::internal("cannot run", sql, error))
}
