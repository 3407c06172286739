//! Worker pools: `n` OS threads per queue, each claiming and running jobs.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qb_core::metrics::Metrics;
use qb_core::model::{Job, JobOutcome};
use qb_core::{JobQueue, PubSub};
use tokio::runtime::Handle;
use tracing::{error, info, warn};

use crate::context::{JobContext, JobError};
use crate::registry::Registry;

/// Native stack of worker threads. Strategy plugins run on them: this is
/// far above the WebAssembly stack limit (`plugins.max_wasm_stack_kib`), so
/// runaway recursion in a plugin ends in a clean trap, never in the
/// thread's guard page.
pub const WORKER_STACK_BYTES: usize = 16 << 20;

/// How long an idle worker waits for a job before re-checking for shutdown.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// Everything a worker thread needs.
#[derive(Clone)]
pub struct WorkerDeps {
    pub queue: Arc<dyn JobQueue>,
    pub pubsub: Arc<dyn PubSub>,
    pub registry: Registry,
    pub metrics: Metrics,
    pub rt: Handle,
    /// Whether this node takes jobs of a queue right now (a standby trader
    /// leaves the `trading` queue to the desk holder). Checked before
    /// every claim.
    pub takes: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

/// The running worker threads of every queue.
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    live: Arc<AtomicUsize>,
    expected: usize,
}

impl Workers {
    /// Starts `concurrency` threads for each `(queue, concurrency)`.
    pub fn start(deps: WorkerDeps, queues: &[(&str, usize)]) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for (queue, n) in queues {
            deps.metrics.queue_length.with_label_values(&[queue]);
            deps.metrics.jobs_running.with_label_values(&[queue]);
            for outcome in ["succeeded", "failed", "cancelled"] {
                deps.metrics.jobs_total.with_label_values(&[queue, outcome]);
            }
            for i in 0..*n {
                let (deps, stop, live) = (deps.clone(), stop.clone(), live.clone());
                let queue = queue.to_string();
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("qb-{queue}-{i}"))
                        .stack_size(WORKER_STACK_BYTES)
                        .spawn(move || worker_loop(deps, queue, stop, live))?,
                );
            }
        }
        Ok(Self {
            expected: threads.len(),
            threads,
            stop,
            live,
        })
    }

    /// Worker threads alive right now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// A shared handle on the live count, for readiness checks.
    pub fn live_counter(&self) -> Arc<AtomicUsize> {
        self.live.clone()
    }

    /// Worker threads started.
    pub fn expected(&self) -> usize {
        self.expected
    }

    /// Asks every worker to stop: idle ones exit, running jobs see
    /// [`JobError::Interrupted`] at their next check and go back to their
    /// queue. Waits up to `bound`; returns the number of threads still busy.
    pub fn shutdown(self, bound: Duration) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + bound;
        while self.live() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = self.live();
        if left == 0 {
            for t in self.threads {
                let _ = t.join();
            }
        }
        left
    }
}

struct LiveGuard<'a>(&'a AtomicUsize, &'a Metrics, &'a str);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        self.1.workers.with_label_values(&[self.2]).dec();
    }
}

fn worker_loop(deps: WorkerDeps, queue: String, stop: Arc<AtomicBool>, live: Arc<AtomicUsize>) {
    live.fetch_add(1, Ordering::SeqCst);
    deps.metrics.workers.with_label_values(&[&queue]).inc();
    let _guard = LiveGuard(&live, &deps.metrics, &queue);
    while !stop.load(Ordering::SeqCst) {
        if !(deps.takes)(&queue) {
            std::thread::sleep(IDLE_WAIT);
            continue;
        }
        match deps.rt.block_on(deps.queue.claim(&queue, IDLE_WAIT)) {
            Ok(Some(job)) => run_job(&deps, &job, &stop),
            Ok(None) => {}
            Err(e) => {
                error!(queue = %queue, error = %e, "cannot claim jobs; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn run_job(deps: &WorkerDeps, job: &Job, stop: &AtomicBool) {
    let started = Instant::now();
    info!(job = %job.id, kind = %job.kind, queue = %job.queue, attempt = job.attempts, "job started");
    let running = deps.metrics.jobs_running.with_label_values(&[&job.queue]);
    running.inc();
    deps.pubsub.publish(
        crate::JOBS_TOPIC,
        serde_json::json!({"id": job.id, "queue": job.queue, "kind": job.kind, "state": "running", "progress": 0.0}),
    );
    let result = match deps.registry.get(&job.kind) {
        None => Err(JobError::Failed(format!(
            "no handler for job kind {:?} in this build",
            job.kind
        ))),
        Some(handler) => {
            let ctx = JobContext {
                job,
                queue: deps.queue.clone(),
                pubsub: deps.pubsub.clone(),
                rt: deps.rt.clone(),
                stop,
                last_poll: Cell::new(Instant::now()),
                cancelled: Cell::new(job.cancel_requested),
            };
            std::panic::catch_unwind(AssertUnwindSafe(|| handler.run(&ctx, &job.params)))
                .unwrap_or_else(|p| {
                    Err(JobError::Failed(format!(
                        "job panicked: {}",
                        panic_message(p.as_ref())
                    )))
                })
        }
    };
    running.dec();
    let outcome = match result {
        Ok(v) => JobOutcome::Succeeded(v),
        Err(JobError::Cancelled) => JobOutcome::Cancelled,
        Err(JobError::Failed(msg)) => JobOutcome::Failed(msg, None),
        Err(JobError::FailedWith(msg, detail)) => JobOutcome::Failed(msg, Some(detail)),
        Err(JobError::Interrupted) => {
            warn!(job = %job.id, "job interrupted by shutdown; back to its queue");
            if let Err(e) = deps.rt.block_on(
                deps.queue
                    .release(&job.id, "interrupted by shutdown; will run again"),
            ) {
                error!(job = %job.id, error = %e, "cannot release job; it will be recovered at the next start");
            }
            return;
        }
    };
    let label = outcome.label();
    match deps.rt.block_on(deps.queue.finish(&job.id, &outcome)) {
        Ok(done) => {
            deps.metrics
                .jobs_total
                .with_label_values(&[&job.queue, label])
                .inc();
            deps.pubsub.publish(
                crate::JOBS_TOPIC,
                serde_json::json!({
                    "id": done.id, "queue": done.queue, "kind": done.kind,
                    "state": done.state, "progress": done.progress, "error": done.error,
                }),
            );
            info!(job = %job.id, outcome = label, elapsed_ms = started.elapsed().as_millis() as u64, "job finished");
        }
        Err(e) => error!(job = %job.id, error = %e, "cannot record job outcome"),
    }
}
