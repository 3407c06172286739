//! What a running job sees: its record, progress reporting, and the
//! cancellation / shutdown checks it must honour.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use qb_core::model::Job;
use qb_core::{JobQueue, PubSub};
use tokio::runtime::Handle;

/// How often a job's cancellation flag is read from the store at most.
const CANCEL_POLL: Duration = Duration::from_millis(250);

/// Why a job stopped without a result.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JobError {
    /// A user asked to cancel it.
    #[error("cancelled")]
    Cancelled,
    /// The process is shutting down; the job goes back to its queue.
    #[error("interrupted by shutdown")]
    Interrupted,
    #[error("{0}")]
    Failed(String),
    /// Failed, with a structured account of why (stored as the job result).
    #[error("{0}")]
    FailedWith(String, serde_json::Value),
}

impl JobError {
    pub fn failed(e: impl std::fmt::Display) -> Self {
        JobError::Failed(e.to_string())
    }
}

/// Handed to [`crate::JobHandler::run`] on a worker thread.
pub struct JobContext<'a> {
    pub(crate) job: &'a Job,
    pub(crate) queue: Arc<dyn JobQueue>,
    pub(crate) pubsub: Arc<dyn PubSub>,
    pub(crate) rt: Handle,
    pub(crate) stop: &'a AtomicBool,
    pub(crate) last_poll: Cell<Instant>,
    pub(crate) cancelled: Cell<bool>,
}

impl<'a> JobContext<'a> {
    pub fn job(&self) -> &Job {
        self.job
    }

    /// Runs a future to completion from the worker thread.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Records progress (`fraction` in 0..=1) and returns an error the job
    /// should propagate with `?` when it was cancelled or must stop.
    pub fn progress(&self, fraction: f64, message: &str) -> Result<(), JobError> {
        let cancel = self
            .block_on(self.queue.progress(&self.job.id, fraction, Some(message)))
            .map_err(JobError::failed)?;
        self.last_poll.set(Instant::now());
        self.cancelled.set(cancel);
        self.pubsub.publish(
            crate::JOBS_TOPIC,
            serde_json::json!({
                "id": self.job.id, "queue": self.job.queue, "kind": self.job.kind,
                "state": "running", "progress": fraction, "message": message,
            }),
        );
        self.check()
    }

    /// Cheap check between steps; reads the store at most every 250 ms.
    pub fn check(&self) -> Result<(), JobError> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(JobError::Interrupted);
        }
        if !self.cancelled.get() && self.last_poll.get().elapsed() >= CANCEL_POLL {
            let job = self
                .block_on(self.queue.get(&self.job.id))
                .map_err(JobError::failed)?;
            self.cancelled.set(job.is_some_and(|j| j.cancel_requested));
            self.last_poll.set(Instant::now());
        }
        if self.cancelled.get() {
            return Err(JobError::Cancelled);
        }
        Ok(())
    }

    /// Sleeps up to `d`, waking early to honour cancellation and shutdown.
    pub fn sleep(&self, d: Duration) -> Result<(), JobError> {
        let end = Instant::now() + d;
        loop {
            self.check()?;
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}
