//! Usage accounting off the request path: records go into a bounded queue
//! and one writer task stores them in batches. A full queue makes requests
//! wait (backpressure) rather than lose records; a failed write is retried
//! until it lands; shutdown drains the queue.

use crate::metrics::Metrics;
use std::time::Duration;
use switchyard_store::{Store, UsageRecord, MAX_BATCH};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Records waiting to be written, at most.
pub const QUEUE_CAPACITY: usize = 10_000;
/// How long the writer waits to fill a batch.
const BATCH_WINDOW: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct UsageRecorder {
    tx: mpsc::Sender<UsageRecord>,
    metrics: Metrics,
}

impl UsageRecorder {
    /// Starts the writer; it runs until `stop` turns true, then drains the
    /// queue and exits.
    pub fn spawn(
        store: Store,
        metrics: Metrics,
        stop: watch::Receiver<bool>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let task = tokio::spawn(writer(store, rx, metrics.clone(), stop));
        (Self { tx, metrics }, task)
    }

    /// Queues a record, waiting while the queue is full.
    pub async fn record(&self, record: UsageRecord) {
        self.metrics.usage_queue_depth.inc();
        if let Err(mpsc::error::SendError(lost)) = self.tx.send(record).await {
            // Only after the writer has exited, i.e. after shutdown.
            self.metrics.usage_queue_depth.dec();
            self.metrics.usage_records_dropped.inc();
            tracing::error!(request_id = %lost.request_id, "usage record arrived after shutdown and was not written");
        }
    }
}

async fn write_with_retry(store: &Store, batch: &[UsageRecord], metrics: &Metrics) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match store.insert_usage(batch).await {
            Ok(()) => {
                metrics.usage_records_written.inc_by(batch.len() as u64);
                metrics.usage_queue_depth.dec_by(batch.len() as i64);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, records = batch.len(), retry_in_ms = backoff.as_millis() as u64, "usage write failed; retrying");
                metrics.usage_write_errors.inc();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn writer(
    store: Store,
    mut rx: mpsc::Receiver<UsageRecord>,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = stop.changed() => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        let window = tokio::time::sleep(BATCH_WINDOW);
        tokio::pin!(window);
        while batch.len() < MAX_BATCH {
            tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => batch.push(r),
                    None => break,
                },
                () = &mut window => break,
            }
        }
        write_with_retry(&store, &batch, &metrics).await;
        batch.clear();
    }
    // Shutdown: everything still queued is written before the writer exits.
    rx.close();
    while let Some(r) = rx.recv().await {
        batch.push(r);
        if batch.len() == MAX_BATCH {
            write_with_retry(&store, &batch, &metrics).await;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        write_with_retry(&store, &batch, &metrics).await;
    }
}
