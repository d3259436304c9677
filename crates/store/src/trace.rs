//! Trace spans of database operations: one client span per store call,
//! named after the operation (the store method), with the OpenTelemetry
//! database attributes. They have the `otel` target, so they go to trace
//! exporters and never to the log; with no exporter they cost nothing.

use crate::pool::Store;

pub(crate) use switchyard_core::TRACE_TARGET;

impl Store {
    /// The `db.system.name` of the database.
    pub fn system_name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) | Store::PostgresPooled(_) => "postgresql",
        }
    }
}

/// The method a `type_name` of a function nested in it names:
/// `crate::keys::<impl Store>::find_key_by_hash::{{closure}}::f` →
/// `find_key_by_hash`.
pub(crate) fn operation(nested_fn: &'static str) -> &'static str {
    let mut path = nested_fn.strip_suffix("::f").unwrap_or(nested_fn);
    while let Some(outer) = path.strip_suffix("::{{closure}}") {
        path = outer;
    }
    path.rsplit("::").next().unwrap_or(path)
}

/// The span of one store operation.
pub(crate) fn span(store: &Store, nested_fn: &'static str) -> tracing::Span {
    let span = tracing::info_span!(
        target: TRACE_TARGET,
        "db",
        otel.name = tracing::field::Empty,
        otel.kind = "client",
        db.system.name = store.system_name(),
        db.operation.name = tracing::field::Empty,
    );
    if !span.is_disabled() {
        let op = operation(nested_fn);
        span.record("otel.name", format!("{op} {}", store.system_name()));
        span.record("db.operation.name", op);
    }
    span
}

/// The trace span of the store method this expands in.
macro_rules! db_span {
    ($store:expr) => {
        $crate::trace::span($store, {
            fn f() {}
            ::std::any::type_name_of_val(&f)
        })
    };
}
pub(crate) use db_span;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_after_their_method() {
        assert_eq!(
            operation("switchyard_store::keys::<impl switchyard_store::pool::Store>::find_key_by_hash::{{closure}}::f"),
            "find_key_by_hash"
        );
        assert_eq!(operation("a::b::settle::f"), "settle");
        async fn nested() -> &'static str {
            fn f() {}
            std::any::type_name_of_val(&f)
        }
        let name = futures_lite_block_on(nested());
        assert_eq!(operation(name), "nested");
    }

    /// Polls a future that never waits.
    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => unreachable!("the future does not wait"),
        }
    }
}
