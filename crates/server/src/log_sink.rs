//! Where log lines go while serving: stderr, in batches. A line is appended
//! to a buffer that a thread of its own writes out every
//! [`FLUSH_INTERVAL`], so a request does not make a write system call of
//! its own (at 1,000 requests/s that is a thousand writes a second, each
//! possibly waiting on a slow pipe to the log collector, against about a
//! hundred). Warnings and errors are written through at once, after what
//! was buffered before them, so lines stay in order and the ones that
//! matter are never held back; a full buffer ([`HIGH_WATER`]) is written by
//! the request that filled it, so a stalled stderr slows requests down
//! rather than growing memory without bound. [`LogSink::flush`] writes what
//! is left (at shutdown). A process killed outright loses at most the last
//! interval's info lines.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long an info line may wait in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// A buffer this full is written out by the request that filled it.
pub const HIGH_WATER: usize = 1 << 20;

struct Shared {
    /// Lines not yet written.
    pending: Mutex<Vec<u8>>,
    /// Where lines go (stderr), held while writing, so that batches and
    /// written-through lines leave in the order they were made.
    out: Mutex<Box<dyn Write + Send>>,
}

/// The batching stderr writer (a `MakeWriter` for the log layer).
#[derive(Clone)]
pub struct LogSink(Arc<Shared>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding either lock leaves a byte buffer or nothing:
    // both are still fine to use.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LogSink {
    fn new(out: Box<dyn Write + Send>) -> Self {
        Self(Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            out: Mutex::new(out),
        }))
    }

    /// Starts the writer thread (it lives as long as the process).
    pub fn start() -> io::Result<Self> {
        let sink = Self::new(Box::new(io::stderr()));
        let writer = sink.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_INTERVAL);
                writer.flush();
            })?;
        Ok(sink)
    }

    /// Writes out everything buffered so far, then `line` (if any).
    fn write_out(&self, line: &[u8]) {
        let mut out = lock(&self.0.out);
        let batch = {
            let mut pending = lock(&self.0.pending);
            if pending.is_empty() {
                Vec::new()
            } else {
                let capacity = pending.capacity();
                std::mem::replace(&mut *pending, Vec::with_capacity(capacity))
            }
        };
        // Nothing to do about a failed write to stderr but go on.
        let _ = out.write_all(&batch);
        let _ = out.write_all(line);
        let _ = out.flush();
    }

    /// Writes out everything buffered so far.
    pub fn flush(&self) {
        if !lock(&self.0.pending).is_empty() {
            self.write_out(&[]);
        }
    }
}

/// One log line on its way: buffered, or written through for warnings and
/// errors.
pub struct Line<'a> {
    sink: &'a LogSink,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.urgent {
            self.sink.write_out(data);
            return Ok(data.len());
        }
        let full = {
            let mut pending = lock(&self.sink.0.pending);
            pending.extend_from_slice(data);
            pending.len() >= HIGH_WATER
        };
        if full {
            self.sink.write_out(&[]);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl LogSink {
    fn line(&self, urgent: bool) -> Line<'_> {
        Line { sink: self, urgent }
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        self.line(false)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        self.line(*meta.level() <= Level::WARN)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A writer whose bytes the test can read.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<u8>>>);
    impl Write for Seen {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn info_lines_wait_and_warnings_take_them_along_in_order() {
        let seen = Seen::default();
        let sink = LogSink::new(Box::new(seen.clone()));
        sink.line(false).write_all(b"one\n").unwrap();
        assert!(lock(&seen.0).is_empty(), "an info line waits");
        sink.line(true).write_all(b"two\n").unwrap();
        assert_eq!(
            &*lock(&seen.0),
            b"one\ntwo\n",
            "a warning goes out at once, after it"
        );
        sink.line(false).write_all(b"three\n").unwrap();
        sink.flush();
        assert_eq!(&*lock(&seen.0), b"one\ntwo\nthree\n");
        sink.line(false).write_all(&vec![b'x'; HIGH_WATER]).unwrap();
        assert_eq!(
            lock(&seen.0).len(),
            14 + HIGH_WATER,
            "a full buffer goes out at once"
        );
    }
}
