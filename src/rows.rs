//! Rows in and out: reading a result column by name (a fault names the column), and forming the
//! composite rows orch_lease's functions return.
use crate::errors;
use pgrx::prelude::*;
use pgrx::spi::{SpiHeapTupleData, SpiResult, SpiTupleTable};
use pgrx::{AllocatedByRust, PgTupleDesc};
use std::cell::RefCell;
use std::collections::HashMap;

/// A row of a statement's result.
pub trait Row {
    fn by_name<T: IntoDatum + FromDatum>(&self, name: &str) -> SpiResult<Option<T>>;
}

impl Row for SpiTupleTable<'_> {
    fn by_name<T: IntoDatum + FromDatum>(&self, name: &str) -> SpiResult<Option<T>> {
        self.get_by_name(name)
    }
}

impl Row for SpiHeapTupleData<'_> {
    fn by_name<T: IntoDatum + FromDatum>(&self, name: &str) -> SpiResult<Option<T>> {
        self.get_by_name(name)
    }
}

/// Column `name` of `row`, which may be NULL.
pub fn nullable<T: IntoDatum + FromDatum>(row: &impl Row, name: &str) -> Option<T> {
    row.by_name(name)
        .unwrap_or_else(|error| errors::internal("cannot read column", name, error))
}

/// Column `name` of `row`, which must not be NULL.
pub fn column<T: IntoDatum + FromDatum>(row: &impl Row, name: &str) -> T {
    nullable(row, name).unwrap_or_else(|| errors::internal("unexpected NULL in column", name, ""))
}

thread_local! {
    /// Composite type oids by name: parsing a type name costs a trip through the SQL parser.
    static TYPES: RefCell<HashMap<&'static str, pg_sys::Oid>> = RefCell::new(HashMap::new());
}

/// Forms a row of the named composite type from its attribute values, in order.
pub fn composite(
    type_name: &'static str,
    values: Vec<Option<pg_sys::Datum>>,
) -> PgHeapTuple<'static, AllocatedByRust> {
    // A cached oid goes stale only if the extension was dropped and created again in this backend:
    // then its type has no relation any more, and the name is looked up again.
    let cached = TYPES
        .with(|types| types.borrow().get(type_name).copied())
        // SAFETY: a catalog cache look-up by oid; a type gone since gives InvalidOid.
        .filter(|oid| unsafe { pg_sys::get_typ_typrelid(*oid) } != pg_sys::InvalidOid);
    let tupdesc = cached
        .and_then(PgTupleDesc::for_composite_type_by_oid)
        .unwrap_or_else(|| {
            let tupdesc = PgTupleDesc::for_composite_type(type_name).unwrap_or_else(|| {
                errors::internal(
                    "missing type",
                    type_name,
                    "run ALTER EXTENSION orch_lease UPDATE",
                )
            });
            TYPES.with(|types| types.borrow_mut().insert(type_name, tupdesc.oid()));
            tupdesc
        });
    // SAFETY: the values are datums of the type's attributes, in attribute order.
    unsafe { PgHeapTuple::from_datums(tupdesc, values) }
        .unwrap_or_else(|error| errors::internal("cannot form a row of", type_name, error))
}
