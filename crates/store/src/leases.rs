//! Named leases: at most one holder per name at a time, until the lease
//! expires, for work that must happen once per deployment rather than once
//! per replica.
//!
//! Every operation is one statement, so concurrent replicas cannot both win:
//! taking a lease is an upsert that succeeds only when the row is new, is
//! already the caller's, or has expired. Times always come from the caller
//! (its clock), never from the database's `now()`, so that tests can move
//! time by hand; a lease is valid while `now < expires_at`.

use crate::{on_pool, Result, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Lease {
    pub name: String,
    /// Who holds (or last held) the lease: a replica id.
    pub holder: String,
    /// When this holder took the lease; unchanged by renewals.
    pub acquired_at: DateTime<Utc>,
    /// The latest renewal (or the acquisition).
    pub renewed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// Whether the lease still holds at `now`.
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

macro_rules! lease_columns {
    () => {
        "name, holder, acquired_at, renewed_at, expires_at"
    };
}

impl Store {
    /// Takes the lease `name` for `holder` until `until`, or extends it when
    /// `holder` has it already. `None` when another holder's lease is still
    /// valid at `now`. An expired lease passes to the caller, with a new
    /// `acquired_at`; the same holder keeps its original `acquired_at`.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Lease>> {
        const SQL: &str = concat!(
            "INSERT INTO leases (name, holder, acquired_at, renewed_at, expires_at) ",
            "VALUES ($1, $2, $3, $3, $4) ON CONFLICT (name) DO UPDATE SET ",
            "acquired_at = CASE WHEN leases.holder = excluded.holder ",
            "THEN leases.acquired_at ELSE excluded.acquired_at END, ",
            "holder = excluded.holder, renewed_at = excluded.renewed_at, ",
            "expires_at = excluded.expires_at ",
            "WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.renewed_at ",
            "RETURNING ",
            lease_columns!()
        );
        Ok(on_pool!(self, p => sqlx::query_as(SQL)
            .bind(name)
            .bind(holder)
            .bind(now)
            .bind(until)
            .fetch_optional(p)
            .await)?)
    }

    /// Extends `holder`'s lease to `until`. `None` when `holder` does not
    /// hold a valid lease at `now` (it expired, or another holder has it):
    /// the caller has lost it and must stop the work it guards.
    pub async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Lease>> {
        const SQL: &str = concat!(
            "UPDATE leases SET renewed_at = $3, expires_at = $4 ",
            "WHERE name = $1 AND holder = $2 AND expires_at > $3 RETURNING ",
            lease_columns!()
        );
        Ok(on_pool!(self, p => sqlx::query_as(SQL)
            .bind(name)
            .bind(holder)
            .bind(now)
            .bind(until)
            .fetch_optional(p)
            .await)?)
    }

    /// Gives the lease up so that another holder may take it at once; false
    /// when `holder` does not hold it (any more).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<bool> {
        const SQL: &str = "DELETE FROM leases WHERE name = $1 AND holder = $2";
        let n = on_pool!(self, p => sqlx::query(SQL)
            .bind(name)
            .bind(holder)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// The lease `name` as stored, valid or not; `None` when nobody holds
    /// it (never taken, or released).
    pub async fn get_lease(&self, name: &str) -> Result<Option<Lease>> {
        const SQL: &str = concat!("SELECT ", lease_columns!(), " FROM leases WHERE name = $1");
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(name).fetch_optional(p).await)?)
    }

    /// Every stored lease, by name.
    pub async fn list_leases(&self) -> Result<Vec<Lease>> {
        const SQL: &str = concat!("SELECT ", lease_columns!(), " FROM leases ORDER BY name");
        Ok(on_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await)?)
    }
}
