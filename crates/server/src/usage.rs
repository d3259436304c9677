//! Usage accounting off the request path: records go into a bounded queue
//! and one writer task stores them in batches, each batch in one transaction
//! with the budget settlements of the same calls. A full queue makes
//! requests wait (backpressure) rather than lose records; a failed write is
//! retried until it lands; shutdown drains the queue. A call's cost stays
//! held in its budget leases until its batch lands (at most the 50 ms batch
//! window plus the write), and the leases learn when it has.
//!
//! On PostgreSQL the writer runs on a thread of its own, with a runtime and
//! a connection pool of its own ([`WRITER_CONNECTIONS`]): building a
//! batch's arrays, encoding them and reading the answer are work in bursts
//! of a batch at a time, which on the request runtime's workers would hold
//! up the calls behind them. (SQLite's driver already runs each statement
//! on a thread of its own.)

use crate::budgets::{Landing, Settlement};
use crate::metrics::Metrics;
use std::time::Duration;
use switchyard_core::config::{DatabaseConfig, DatabaseKind};
use switchyard_store::{Store, UsageRecord, MAX_BATCH};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Records waiting to be written, at most.
pub const QUEUE_CAPACITY: usize = 10_000;
/// How long the writer waits to fill a batch.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Connections of the PostgreSQL writer's own pool: one writes, a second
/// lets a retry start while a broken one is being replaced.
pub const WRITER_CONNECTIONS: u32 = 2;

/// One call's accounting: its usage row and, when a budget applied, the
/// settlement of its reservation.
struct Entry {
    record: UsageRecord,
    settlement: Option<Settlement>,
}

/// Entries gathered for one write.
#[derive(Default)]
struct Batch {
    records: Vec<UsageRecord>,
    settlements: Vec<switchyard_store::Settlement>,
    landings: Vec<Landing>,
}

impl Batch {
    fn push(&mut self, e: Entry) {
        self.records.push(e.record);
        if let Some(s) = e.settlement {
            self.settlements.push(s.store);
            self.landings.push(s.landing);
        }
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[derive(Clone)]
pub struct UsageRecorder {
    tx: mpsc::Sender<Entry>,
    metrics: Metrics,
}

impl UsageRecorder {
    /// Starts the writer; it runs until `stop` turns true, then drains the
    /// queue and exits.
    ///
    /// On PostgreSQL the writer gets a thread, a runtime and a pool of its
    /// own on `database`; should either fail to start, it runs on the
    /// caller's runtime with `store`, as on SQLite.
    pub fn spawn(
        store: Store,
        database: &DatabaseConfig,
        metrics: Metrics,
        stop: watch::Receiver<bool>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let task = match store.kind() {
            DatabaseKind::Sqlite => tokio::spawn(writer(store, rx, metrics.clone(), stop)),
            DatabaseKind::Postgres => {
                let own = DatabaseConfig {
                    pool_size: WRITER_CONNECTIONS,
                    ..database.clone()
                };
                let metrics = metrics.clone();
                let caller = tokio::runtime::Handle::current();
                tokio::task::spawn_blocking(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    match runtime {
                        // The pool is made inside the runtime, so that its
                        // connections and upkeep belong to it.
                        Ok(runtime) => runtime.block_on(async move {
                            let pool = Store::connect_lazy(&own).unwrap_or_else(|e| {
                                tracing::warn!(error = %e, "the usage writer shares the service's connection pool: its own could not be made");
                                store
                            });
                            writer(pool, rx, metrics, stop).await
                        }),
                        Err(e) => {
                            tracing::warn!(error = %e, "the usage writer runs on the request runtime: its own could not start");
                            caller.block_on(writer(store, rx, metrics, stop));
                        }
                    }
                })
            }
        };
        (Self { tx, metrics }, task)
    }

    /// Queues a record (and the settlement of the call's budget
    /// reservation), waiting while the queue is full.
    pub async fn record(&self, record: UsageRecord, settlement: Option<Settlement>) {
        self.metrics.usage_queue_depth.inc();
        let entry = Entry { record, settlement };
        // Nearly always the queue has room; the waiting send, a future of
        // most of a kilobyte that every call's future would hold, is made
        // on the heap only when it is full.
        let sent = match self.tx.try_send(entry) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(entry)) => Box::pin(self.tx.send(entry)).await,
            Err(mpsc::error::TrySendError::Closed(entry)) => Err(mpsc::error::SendError(entry)),
        };
        if let Err(mpsc::error::SendError(Entry { record: lost, .. })) = sent {
            // Only after the writer has exited, i.e. after shutdown.
            self.metrics.usage_queue_depth.dec();
            self.metrics.usage_records_dropped.inc();
            tracing::error!(request_id = %lost.request_id, "usage record arrived after shutdown and was not written");
        }
    }
}

impl UsageRecorder {
    /// Queues a record without waiting, for code that cannot wait (a value
    /// dropped outside the runtime). A full queue loses the record, counted
    /// and logged.
    pub fn record_now(&self, record: UsageRecord, settlement: Option<Settlement>) {
        self.metrics.usage_queue_depth.inc();
        let entry = Entry { record, settlement };
        if let Err(e) = self.tx.try_send(entry) {
            let lost = match e {
                mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => e,
            };
            self.metrics.usage_queue_depth.dec();
            self.metrics.usage_records_dropped.inc();
            tracing::error!(request_id = %lost.record.request_id, "usage record could not be queued and was not written");
        }
    }
}

async fn write_with_retry(store: &Store, batch: &mut Batch, metrics: &Metrics) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match store.record_usage(&batch.records, &batch.settlements).await {
            Ok(()) => {
                metrics.usage_records_written.inc_by(batch.len() as u64);
                metrics.usage_queue_depth.dec_by(batch.len() as i64);
                batch.records.clear();
                batch.settlements.clear();
                for landing in batch.landings.drain(..) {
                    landing.landed();
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), retry_in_ms = backoff.as_millis() as u64, "usage write failed; retrying");
                metrics.usage_write_errors.inc();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn writer(
    store: Store,
    mut rx: mpsc::Receiver<Entry>,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Batch::default();
    let mut arrived = Vec::with_capacity(MAX_BATCH);
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut arrived, MAX_BATCH) => n,
            _ = stop.changed() => 0,
        };
        if n == 0 {
            break;
        }
        if n < MAX_BATCH {
            // Let the batch fill for one window. The writer sleeps through
            // it rather than waking for every record: at a thousand calls a
            // second that is twenty wake-ups instead of a thousand.
            tokio::time::sleep(BATCH_WINDOW).await;
            while arrived.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(e) => arrived.push(e),
                    Err(_) => break,
                }
            }
        }
        for e in arrived.drain(..) {
            batch.push(e);
        }
        write_with_retry(&store, &mut batch, &metrics).await;
    }
    // Shutdown: everything still queued is written before the writer exits.
    rx.close();
    while let Some(r) = rx.recv().await {
        batch.push(r);
        if batch.len() == MAX_BATCH {
            write_with_retry(&store, &mut batch, &metrics).await;
        }
    }
    if !batch.is_empty() {
        write_with_retry(&store, &mut batch, &metrics).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> UsageRecord {
        switchyard_testkit::usage_record(id, "key_1", switchyard_core::now())
    }

    /// A full queue makes `record` wait for room, and loses nothing.
    #[tokio::test]
    async fn a_full_queue_makes_the_caller_wait_and_keeps_the_record() {
        let (tx, mut rx) = mpsc::channel(1);
        let metrics = Metrics::new("test", None, false);
        let recorder = UsageRecorder {
            tx,
            metrics: metrics.clone(),
        };
        recorder.record(record("first"), None).await;
        let waiting = tokio::spawn({
            let recorder = recorder.clone();
            async move { recorder.record(record("second"), None).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "a full queue must make the caller wait"
        );
        let ids: Vec<String> = [rx.recv().await, rx.recv().await]
            .into_iter()
            .map(|e| e.unwrap().record.request_id)
            .collect();
        waiting.await.unwrap();
        assert_eq!(ids, ["first", "second"]);
        assert_eq!(metrics.usage_records_dropped.get(), 0);
        assert_eq!(metrics.usage_queue_depth.get(), 2);
    }
}
