//! The `usage_log` repository: records written in batches, each batch in
//! one transaction together with the budget settlements of the same calls
//! (on PostgreSQL one statement, [`POSTGRES_RECORD`]).

use crate::{on_pool, Result, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// One request's usage. Costs are nano-USD; latencies milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UsageRecord {
    pub timestamp: DateTime<Utc>,
    pub request_id: String,
    pub key_id: String,
    pub project: String,
    pub endpoint: String,
    pub model_requested: Option<String>,
    pub model_used: Option<String>,
    pub backend: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub cost_nano_usd: i64,
    pub latency_ms: i64,
    pub upstream_latency_ms: Option<i64>,
    pub status: i32,
    pub error_type: Option<String>,
}

/// The actual cost of a call, to add to the spend of the budget periods it
/// was admitted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// (budget id, period key) of each budget the call was charged to.
    pub budgets: Vec<(String, String)>,
    pub actual_nano_usd: i64,
}

/// The most records one write takes (the usage writer's batch size).
pub const MAX_BATCH: usize = 500;

/// Rows per INSERT statement on SQLite. A write is made of statements of these sizes,
/// largest first (50 records: three of 16 and two of 1), so that only four
/// statement texts exist: each is prepared once per connection and kept.
/// A statement sized to each batch would be parsed and planned anew for
/// every batch (about 10,000 instructions per row on SQLite), and keeping
/// those prepared held tens of megabytes per connection after a burst.
/// The largest, 64 rows of 16 parameters, stays far below SQLite's
/// parameter limit.
const STATEMENT_ROWS: [usize; 4] = [64, 16, 4, 1];

/// `records` cut into statement-sized runs (see [`STATEMENT_ROWS`]).
fn statement_runs<T>(mut records: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = STATEMENT_ROWS
            .into_iter()
            .find(|&rows| rows <= records.len())?;
        let (run, rest) = records.split_at(size);
        records = rest;
        Some(run)
    })
}

/// The columns of a usage row, in the order they are bound.
const USAGE_COLUMNS: &str = "timestamp, request_id, key_id, project, endpoint, \
    model_requested, model_used, backend, input_tokens, output_tokens, cached_tokens, \
    cost_nano_usd, latency_ms, upstream_latency_ms, status, error_type";
const USAGE_COLUMN_COUNT: usize = 16;

/// The SQLite INSERT of a run of `rows` usage records. The texts of the
/// run sizes in [`STATEMENT_ROWS`] are written once per process: a
/// `QueryBuilder` formatted each placeholder through `fmt` for every row,
/// as much work as binding the row's values.
///
/// The statement is `INSERT OR FAIL`: a constraint error ends the
/// statement without undoing its earlier rows, so SQLite keeps no
/// statement journal for it. With the default (ABORT), every multi-row
/// statement after the transaction's first copied the pages earlier
/// statements had dirtied into a statement journal, spilled to a temporary
/// file: about one extra write system call per row. Nothing partial can
/// land: any error rolls the whole transaction back.
fn usage_insert(rows: usize) -> std::borrow::Cow<'static, str> {
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        STATEMENT_ROWS
            .iter()
            .map(|&n| usage_insert_text(n))
            .collect()
    });
    match STATEMENT_ROWS.iter().position(|&n| n == rows) {
        Some(i) => std::borrow::Cow::Borrowed(texts[i].as_str()),
        None => std::borrow::Cow::Owned(usage_insert_text(rows)),
    }
}

fn usage_insert_text(rows: usize) -> String {
    let mut sql = String::with_capacity(256 + rows * USAGE_COLUMN_COUNT * 3);
    sql.push_str("INSERT OR FAIL INTO usage_log (");
    sql.push_str(USAGE_COLUMNS);
    sql.push_str(") VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..USAGE_COLUMN_COUNT {
            sql.push_str(if column == 0 { "?" } else { ", ?" });
        }
        sql.push(')');
    }
    sql
}

/// The PostgreSQL write of a whole batch, in one statement and so one
/// round trip, whatever its size: the rows as one array per column
/// (`UNNEST`), inserted by a data-modifying `WITH` (which runs to
/// completion whether or not it is read), and the settlements, summed per
/// budget period, added to the spend of the budgets that still exist, in a
/// stable order so that concurrent writers lock rows alike. One statement
/// is atomic: the rows and the spend land together or not at all. One
/// text for every batch, so it is prepared once per connection.
const POSTGRES_RECORD: &str = "WITH usage AS (INSERT INTO usage_log (timestamp, request_id, \
    key_id, project, endpoint, model_requested, model_used, backend, input_tokens, \
    output_tokens, cached_tokens, cost_nano_usd, latency_ms, upstream_latency_ms, status, \
    error_type) SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], \
    $5::text[], $6::text[], $7::text[], $8::text[], $9::int8[], $10::int8[], $11::int8[], \
    $12::int8[], $13::int8[], $14::int8[], $15::int4[], $16::text[])) \
    INSERT INTO budget_spend (budget_id, period_key, spent_nano_usd) \
    SELECT s.budget_id, s.period_key, s.spent \
    FROM UNNEST($17::text[], $18::text[], $19::int8[]) AS s (budget_id, period_key, spent) \
    WHERE EXISTS (SELECT 1 FROM budgets WHERE id = s.budget_id) \
    ORDER BY s.budget_id, s.period_key \
    ON CONFLICT (budget_id, period_key) DO UPDATE \
    SET spent_nano_usd = budget_spend.spent_nano_usd + excluded.spent_nano_usd";

/// A column of a batch, as the array PostgreSQL unnests.
fn column<'r, T>(records: &'r [UsageRecord], f: impl Fn(&'r UsageRecord) -> T) -> Vec<T> {
    records.iter().map(f).collect()
}

impl Store {
    /// Writes records in one transaction: either every record of the call
    /// lands or none does.
    pub async fn insert_usage(&self, records: &[UsageRecord]) -> Result<()> {
        self.record_usage(records, &[]).await
    }

    /// Writes usage records and adds the calls' costs to their budgets'
    /// spend in one transaction, so a call's usage row and its budget spend
    /// land together or not at all (and a retry after a failure counts
    /// nothing twice). Settlements of the same budget period are summed into
    /// one statement; a budget deleted meanwhile is skipped.
    pub async fn record_usage(
        &self,
        records: &[UsageRecord],
        settlements: &[Settlement],
    ) -> Result<()> {
        let span = crate::trace::db_span!(self);
        tracing::Instrument::instrument(self.record_usage_untraced(records, settlements), span)
            .await
    }

    async fn record_usage_untraced(
        &self,
        records: &[UsageRecord],
        settlements: &[Settlement],
    ) -> Result<()> {
        const SETTLE: &str = "INSERT INTO budget_spend (budget_id, period_key, spent_nano_usd) \
            SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM budgets WHERE id = $1) \
            ON CONFLICT (budget_id, period_key) DO UPDATE \
            SET spent_nano_usd = budget_spend.spent_nano_usd + excluded.spent_nano_usd";
        if records.is_empty() && settlements.iter().all(|s| s.budgets.is_empty()) {
            return Ok(());
        }
        // (budget, period) → actual spend, in a stable order so concurrent
        // writers lock rows alike.
        let mut sums: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for s in settlements {
            for (id, key) in &s.budgets {
                let e = sums.entry((id, key)).or_default();
                *e = e.saturating_add(s.actual_nano_usd);
            }
        }
        let sqlite = match self {
            Store::Sqlite(sqlite) => sqlite,
            Store::Postgres(pool) => {
                return record_usage_postgres(pool, false, records, &sums).await
            }
            Store::PostgresPooled(pool) => {
                return record_usage_postgres(pool, true, records, &sums).await
            }
        };
        let mut turn = sqlite.writer().await?;
        let done: Result<()> = async {
            let mut tx = sqlx::Acquire::begin(turn.conn()?).await?;
            for chunk in statement_runs(records) {
                let sql = usage_insert(chunk.len());
                let mut q = sqlx::query(&sql);
                for r in chunk {
                    q = q
                        .bind(r.timestamp)
                        .bind(&r.request_id)
                        .bind(&r.key_id)
                        .bind(&r.project)
                        .bind(&r.endpoint)
                        .bind(&r.model_requested)
                        .bind(&r.model_used)
                        .bind(&r.backend)
                        .bind(r.input_tokens)
                        .bind(r.output_tokens)
                        .bind(r.cached_tokens)
                        .bind(r.cost_nano_usd)
                        .bind(r.latency_ms)
                        .bind(r.upstream_latency_ms)
                        .bind(r.status)
                        .bind(&r.error_type);
                }
                q.execute(&mut *tx).await?;
            }
            for ((id, key), spent) in &sums {
                sqlx::query(SETTLE)
                    .bind(*id)
                    .bind(*key)
                    .bind(*spent)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        if done.is_err() {
            turn.discard();
        }
        done
    }

    pub async fn count_usage(&self) -> Result<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM usage_log";
        Ok(on_pool!(self, p => sqlx::query_scalar(SQL).fetch_one(p).await)?)
    }

    /// The most recent records, newest first.
    pub async fn recent_usage(&self, limit: i64) -> Result<Vec<UsageRecord>> {
        const SQL: &str =
            "SELECT timestamp, request_id, key_id, project, endpoint, model_requested, \
            model_used, backend, input_tokens, output_tokens, cached_tokens, cost_nano_usd, \
            latency_ms, upstream_latency_ms, status, error_type FROM usage_log \
            ORDER BY timestamp DESC, id DESC LIMIT $1";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(limit).fetch_all(p).await)?)
    }
}

/// [`Store::record_usage`] on PostgreSQL (`pooled`: behind a
/// transaction-pooling proxy): [`POSTGRES_RECORD`].
async fn record_usage_postgres(
    pool: &sqlx::PgPool,
    pooled: bool,
    records: &[UsageRecord],
    sums: &BTreeMap<(&str, &str), i64>,
) -> Result<()> {
    let q = sqlx::query(POSTGRES_RECORD)
        .bind(column(records, |r| r.timestamp))
        .bind(column(records, |r| r.request_id.as_str()))
        .bind(column(records, |r| r.key_id.as_str()))
        .bind(column(records, |r| r.project.as_str()))
        .bind(column(records, |r| r.endpoint.as_str()))
        .bind(column(records, |r| r.model_requested.as_deref()))
        .bind(column(records, |r| r.model_used.as_deref()))
        .bind(column(records, |r| r.backend.as_deref()))
        .bind(column(records, |r| r.input_tokens))
        .bind(column(records, |r| r.output_tokens))
        .bind(column(records, |r| r.cached_tokens))
        .bind(column(records, |r| r.cost_nano_usd))
        .bind(column(records, |r| r.latency_ms))
        .bind(column(records, |r| r.upstream_latency_ms))
        .bind(column(records, |r| r.status))
        .bind(column(records, |r| r.error_type.as_deref()))
        .bind(sums.keys().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(sums.keys().map(|(_, period)| *period).collect::<Vec<_>>())
        .bind(sums.values().copied().collect::<Vec<_>>());
    if pooled {
        let mut tx = pool.begin_with(crate::pool::POOLER_BEGIN).await?;
        q.execute(&mut *tx).await?;
        tx.commit().await?;
    } else {
        q.execute(pool).await?;
    }
    Ok(())
}

/// Which records a usage summary covers.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    pub key_id: Option<String>,
    pub project: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// How a usage summary is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGrouping {
    Model,
    /// The UTC calendar day, `YYYY-MM-DD`.
    Day,
    /// The key id.
    Key,
    /// The project.
    Project,
}

/// One group of a usage summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UsageGroup {
    pub group: String,
    pub requests: i64,
    /// Requests answered with an HTTP status of 400 or above.
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub cost_nano_usd: i64,
}

impl UsageGroup {
    /// The sum of `groups`, named `total`.
    pub fn total(groups: &[UsageGroup]) -> UsageGroup {
        UsageGroup {
            group: "total".into(),
            requests: groups.iter().map(|g| g.requests).sum(),
            errors: groups.iter().map(|g| g.errors).sum(),
            input_tokens: groups.iter().map(|g| g.input_tokens).sum(),
            output_tokens: groups.iter().map(|g| g.output_tokens).sum(),
            cached_tokens: groups.iter().map(|g| g.cached_tokens).sum(),
            cost_nano_usd: groups.iter().map(|g| g.cost_nano_usd).sum(),
        }
    }
}

/// The columns every usage summary adds up, after its group.
const SUMMARY_SUMS: &str = " AS \"group\", COUNT(*) AS requests, \
    CAST(COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0) AS BIGINT) AS errors, \
    CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
    CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
    CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT) AS cached_tokens, \
    CAST(COALESCE(SUM(cost_nano_usd), 0) AS BIGINT) AS cost_nano_usd \
    FROM usage_log";

/// The text of a usage summary for `filter`: a condition for each filter
/// given and none for the others, numbered in the order
/// [`Store::usage_summary`] binds them (key, project, from, to). A
/// condition written for every filter, such as `($1 IS NULL OR key_id =
/// $1)`, keeps the planner from using the key, project and time indexes
/// (SQLite always, PostgreSQL once it plans the statement generically), so
/// every summary read the whole table.
fn summary_sql(group: &str, filter: &UsageFilter) -> String {
    let mut sql = format!("SELECT {group}{SUMMARY_SUMS}");
    for (n, (condition, _)) in summary_conditions(filter).enumerate() {
        sql.push_str(if n == 0 { " WHERE " } else { " AND " });
        sql.push_str(condition);
        sql.push('$');
        sql.push_str(&(n + 1).to_string());
    }
    sql.push_str(" GROUP BY 1 ORDER BY 1");
    sql
}

/// The conditions of the filters given, in binding order, each with its
/// parameter's PostgreSQL type.
fn summary_conditions(filter: &UsageFilter) -> impl Iterator<Item = (&'static str, &'static str)> {
    [
        (filter.key_id.is_some(), "key_id = ", "text"),
        (filter.project.is_some(), "project = ", "text"),
        (filter.from.is_some(), "timestamp >= ", "timestamptz"),
        (filter.to.is_some(), "timestamp < ", "timestamptz"),
    ]
    .into_iter()
    .filter(|(given, _, _)| *given)
    .map(|(_, condition, kind)| (condition, kind))
}

/// The expression a usage summary groups by.
fn summary_group(
    grouping: UsageGrouping,
    kind: switchyard_core::config::DatabaseKind,
) -> &'static str {
    use switchyard_core::config::DatabaseKind;
    match (grouping, kind) {
        (UsageGrouping::Model, _) => "COALESCE(model_used, model_requested, '')",
        (UsageGrouping::Day, DatabaseKind::Sqlite) => "substr(timestamp, 1, 10)",
        (UsageGrouping::Day, DatabaseKind::Postgres) => {
            "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        }
        (UsageGrouping::Key, _) => "key_id",
        (UsageGrouping::Project, _) => "project",
    }
}

/// Binds the filters [`summary_sql`] made conditions of, in its order.
macro_rules! bind_filter {
    ($query:expr, $filter:expr) => {{
        let mut q = $query;
        let f: &UsageFilter = $filter;
        if let Some(key) = &f.key_id {
            q = q.bind(key);
        }
        if let Some(project) = &f.project {
            q = q.bind(project);
        }
        if let Some(from) = f.from {
            q = q.bind(from);
        }
        if let Some(to) = f.to {
            q = q.bind(to);
        }
        q
    }};
}

impl Store {
    /// Requests, tokens and cost matching `filter`, grouped by model or day.
    pub async fn usage_summary(
        &self,
        filter: &UsageFilter,
        grouping: UsageGrouping,
    ) -> Result<Vec<UsageGroup>> {
        let sql = summary_sql(summary_group(grouping, self.kind()), filter);
        Ok(
            on_pool!(self, p => bind_filter!(sqlx::query_as(&sql), filter)
            .fetch_all(p)
            .await)?,
        )
    }

    /// How the database would run [`Store::usage_summary`], one line per
    /// step of its plan: SQLite's `EXPLAIN QUERY PLAN`, PostgreSQL's
    /// `EXPLAIN` of the generic plan (the one a prepared statement comes to
    /// use) with sequential scans priced out, so that a small table shows
    /// whether an index can serve the filter at all. For tests and for
    /// looking into a slow summary.
    pub async fn usage_summary_plan(
        &self,
        filter: &UsageFilter,
        grouping: UsageGrouping,
    ) -> Result<Vec<String>> {
        let sql = summary_sql(summary_group(grouping, self.kind()), filter);
        match self {
            Store::Sqlite(sqlite) => {
                let explain = format!("EXPLAIN QUERY PLAN {sql}");
                let rows: Vec<(i64, i64, i64, String)> =
                    bind_filter!(sqlx::query_as(&explain), filter)
                        .fetch_all(&sqlite.pool)
                        .await?;
                Ok(rows.into_iter().map(|(_, _, _, step)| step).collect())
            }
            Store::Postgres(pool) => postgres_plan(pool.begin().await?, &sql, filter).await,
            Store::PostgresPooled(pool) => {
                let tx = pool.begin_with(crate::pool::POOLER_BEGIN).await?;
                postgres_plan(tx, &sql, filter).await
            }
        }
    }
}

/// [`Store::usage_summary_plan`] on PostgreSQL, in `tx`, which it rolls
/// back. The summary is prepared under a name and its generic plan
/// explained: `EXPLAIN` of the statement itself would plan it for the
/// values bound, as a one-off statement is planned. A generic plan does not
/// depend on the values, so it is explained for nulls of the filters'
/// types.
async fn postgres_plan(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    sql: &str,
    filter: &UsageFilter,
) -> Result<Vec<String>> {
    let types: Vec<&str> = summary_conditions(filter).map(|(_, kind)| kind).collect();
    let (types, nulls) = match types.is_empty() {
        true => (String::new(), String::new()),
        false => (
            format!("({})", types.join(", ")),
            format!("(NULL::{})", types.join(", NULL::")),
        ),
    };
    for setting in [
        "SET LOCAL plan_cache_mode = force_generic_plan",
        "SET LOCAL enable_seqscan = off",
        &format!("PREPARE usage_summary_plan {types} AS {sql}"),
    ] {
        sqlx::query(setting).execute(&mut *tx).await?;
    }
    let explain = format!("EXPLAIN EXECUTE usage_summary_plan {nulls}");
    let rows: Vec<(String,)> = sqlx::query_as(&explain).fetch_all(&mut *tx).await?;
    // A prepared statement outlives the transaction that made it.
    sqlx::query("DEALLOCATE usage_summary_plan")
        .execute(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(rows.into_iter().map(|(step,)| step).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_cut_into_the_few_statement_sizes_in_order() {
        for n in [0, 1, 3, 4, 5, 50, 64, 65, 127, 500] {
            let records: Vec<usize> = (0..n).collect();
            let runs: Vec<&[usize]> = statement_runs(&records).collect();
            let sizes: Vec<usize> = runs.iter().map(|r| r.len()).collect();
            assert!(
                sizes.iter().all(|s| STATEMENT_ROWS.contains(s)),
                "{n}: {sizes:?}"
            );
            assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{n}: {sizes:?}");
            let rejoined: Vec<usize> = runs.concat();
            assert_eq!(rejoined, records, "{n}: every record once, in order");
        }
        let fifty: Vec<usize> = (0..50).collect();
        let sizes: Vec<usize> = statement_runs(&fifty).map(<[usize]>::len).collect();
        assert_eq!(sizes, [16, 16, 16, 1, 1]);
    }

    #[test]
    fn insert_texts_have_a_placeholder_per_column_and_row() {
        let two = usage_insert(2);
        assert!(
            two.starts_with("INSERT OR FAIL INTO usage_log (timestamp, "),
            "{two}"
        );
        assert_eq!(two.matches('?').count(), 2 * USAGE_COLUMN_COUNT);
        assert_eq!(
            USAGE_COLUMNS.split(", ").count(),
            USAGE_COLUMN_COUNT,
            "one placeholder per column"
        );
        assert_eq!(
            usage_insert(16).matches('?').count(),
            16 * USAGE_COLUMN_COUNT
        );
        // The run sizes are built once and shared; any other size is built.
        assert!(matches!(usage_insert(16), std::borrow::Cow::Borrowed(_)));
        assert!(matches!(usage_insert(3), std::borrow::Cow::Owned(_)));
    }

    #[test]
    fn the_postgres_write_names_every_column_with_an_array_each() {
        let columns = format!("INSERT INTO usage_log ({USAGE_COLUMNS})");
        assert!(POSTGRES_RECORD.contains(&columns), "{POSTGRES_RECORD}");
        for n in 1..=19 {
            assert!(POSTGRES_RECORD.contains(&format!("${n}::")), "${n}");
        }
        assert!(!POSTGRES_RECORD.contains("$20"));
        let arrays = POSTGRES_RECORD.matches("[]").count();
        assert_eq!(arrays, USAGE_COLUMN_COUNT + 3);
    }
}
