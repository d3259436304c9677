//! The backup gauges: when the last good backup and restore test were, how
//! big and how long the last backup was. They are read from the database's
//! record of backup runs (written by `switchyard backup` wherever it ran,
//! and by the scheduled jobs), so every replica reports the same values;
//! 0 until there is one.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use switchyard_store::BackupRun;

/// The metric names, as the alert rules read them.
pub const LAST_SUCCESS: &str = "switchyard_backup_last_success_timestamp_seconds";
pub const LAST_VERIFY_SUCCESS: &str = "switchyard_backup_last_verify_success_timestamp_seconds";

#[derive(Clone, Debug, Default)]
pub struct BackupGauges {
    pub last_success: Gauge<f64, AtomicU64>,
    pub last_verify_success: Gauge<f64, AtomicU64>,
    pub size_bytes: Gauge<f64, AtomicU64>,
    pub duration_seconds: Gauge<f64, AtomicU64>,
}

impl BackupGauges {
    pub fn register(registry: &mut Registry) -> Self {
        let g = Self::default();
        registry.register(
            LAST_SUCCESS,
            "Unix time of the last successful backup (switchyard backup create or BACKUP_SCHEDULE), deployment-wide; 0 when none",
            g.last_success.clone(),
        );
        registry.register(
            LAST_VERIFY_SUCCESS,
            "Unix time of the last successful restore test (switchyard backup verify or BACKUP_VERIFY_SCHEDULE), deployment-wide; 0 when none",
            g.last_verify_success.clone(),
        );
        registry.register(
            "switchyard_backup_size_bytes",
            "Size of the last successful backup's archive",
            g.size_bytes.clone(),
        );
        registry.register(
            "switchyard_backup_duration_seconds",
            "How long the last successful backup took",
            g.duration_seconds.clone(),
        );
        g
    }

    /// Sets the gauges from the last good backup and restore test.
    pub fn set(&self, backup: Option<&BackupRun>, verify: Option<&BackupRun>) {
        let at = |r: Option<&BackupRun>| {
            r.map_or(0.0, |r| r.finished_at.timestamp_millis() as f64 / 1000.0)
        };
        self.last_success.set(at(backup));
        self.last_verify_success.set(at(verify));
        if let Some(b) = backup {
            self.size_bytes.set(b.size_bytes.unwrap_or(0) as f64);
            let took = b.finished_at - b.started_at;
            self.duration_seconds
                .set(took.num_milliseconds().max(0) as f64 / 1000.0);
        }
    }
}
