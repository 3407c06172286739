//! Job kinds: what each one is called, which queue it runs on by default,
//! how its parameters are checked, and the code that runs it.

use std::collections::BTreeMap;
use std::sync::Arc;

use qb_core::model::{JobSpec, NewJob};
use serde::Serialize;

use crate::context::{JobContext, JobError};

/// Which field of a job's parameters is wrong (e.g. `params.fast`), and why.
pub type FieldError = (String, String);

/// One kind of job.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Dotted name, e.g. `maintenance.checkpoint`.
    fn kind(&self) -> &'static str;
    /// Queue it runs on unless the spec names another.
    fn queue(&self) -> &'static str;
    /// One line for humans.
    fn description(&self) -> &'static str;
    /// Whether any user with the trader role may enqueue it (otherwise admins only).
    fn trader_may_enqueue(&self) -> bool {
        false
    }
    /// Checks parameters before the job is enqueued, whoever enqueues it
    /// (the jobs API, the kind's own route, a schedule, the CLI), and
    /// returns them as they are stored (e.g. a plugin named by name
    /// pinned to its hash): the one validation of the kind.
    async fn check(&self, params: serde_json::Value) -> Result<serde_json::Value, FieldError> {
        Ok(params)
    }
    /// Does the work on a worker thread.
    fn run(
        &self,
        ctx: &JobContext<'_>,
        params: &serde_json::Value,
    ) -> Result<serde_json::Value, JobError>;
}

/// A registered kind as the API lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KindInfo {
    pub kind: String,
    pub queue: String,
    pub description: String,
    pub admin_only: bool,
}

/// Every job kind this process can run.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<&'static str, Arc<dyn JobHandler>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, handler: impl JobHandler) -> &mut Self {
        self.handlers.insert(handler.kind(), Arc::new(handler));
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn JobHandler>> {
        self.handlers.get(kind).cloned()
    }

    pub fn kinds(&self) -> Vec<KindInfo> {
        self.handlers
            .values()
            .map(|h| KindInfo {
                kind: h.kind().into(),
                queue: h.queue().into(),
                description: h.description().into(),
                admin_only: !h.trader_may_enqueue(),
            })
            .collect()
    }

    /// Checks a spec and turns it into a job to enqueue. The error says which
    /// field is wrong and why.
    pub async fn prepare(
        &self,
        spec: &JobSpec,
        created_by: Option<String>,
        max_attempts: u32,
    ) -> Result<NewJob, FieldError> {
        let handler = self.get(&spec.kind).ok_or_else(|| {
            (
                "kind".to_string(),
                format!(
                    "unknown job kind {:?}; known kinds: {}",
                    spec.kind,
                    self.handlers.keys().copied().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let queue = match &spec.queue {
            Some(q) if crate::QUEUES.contains(&q.as_str()) => q.clone(),
            Some(q) => {
                return Err((
                    "queue".into(),
                    format!("unknown queue {q:?}; queues: {}", crate::QUEUES.join(", ")),
                ));
            }
            None => handler.queue().to_string(),
        };
        let params = match &spec.params {
            serde_json::Value::Null => serde_json::json!({}),
            p @ serde_json::Value::Object(_) => p.clone(),
            _ => return Err(("params".into(), "must be a JSON object".into())),
        };
        let params = handler.check(params).await?;
        Ok(NewJob {
            queue,
            kind: spec.kind.clone(),
            params,
            max_attempts,
            created_by,
            schedule_id: None,
        })
    }
}
