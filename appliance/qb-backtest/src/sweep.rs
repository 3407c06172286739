//! `backtest.sweep`: a grid of parameter values over one backtest spec.
//! The sweep job expands the grid into one `backtest.run` job per
//! combination (so they spread over the backtest queue's workers) and
//! records their ids as its result; the API assembles the results table.

use std::collections::BTreeMap;
use std::sync::Arc;

use qb_core::JobQueue;
use qb_core::model::NewJob;
use qb_jobs::{FieldError, JobContext, JobError, JobHandler};
use qb_plugin_host::registry::PluginRegistry;
use serde::{Deserialize, Serialize};

use crate::job::{BacktestSpec, KIND, check_spec};

pub const SWEEP_KIND: &str = "backtest.sweep";
/// Most combinations one sweep may expand to.
pub const MAX_COMBINATIONS: usize = 1000;

/// A sweep: the base spec and the values to try per parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    pub base: BacktestSpec,
    pub grid: BTreeMap<String, Vec<f64>>,
}

impl SweepSpec {
    /// Every combination, in a fixed order (parameters by name, values as
    /// given), each merged over the base parameters.
    pub fn combinations(&self) -> Result<Vec<BTreeMap<String, f64>>, String> {
        let mut out = vec![self.base.params.clone()];
        for (name, values) in &self.grid {
            if values.is_empty() {
                return Err(format!("grid.{name}: no values"));
            }
            if values.iter().any(|v| !v.is_finite()) {
                return Err(format!("grid.{name}: values must be finite numbers"));
            }
            if out.len() * values.len() > MAX_COMBINATIONS {
                return Err(format!(
                    "the grid has more than {MAX_COMBINATIONS} combinations"
                ));
            }
            out = out
                .into_iter()
                .flat_map(|p| {
                    values.iter().map(move |v| {
                        let mut q = p.clone();
                        q.insert(name.clone(), *v);
                        q
                    })
                })
                .collect();
        }
        Ok(out)
    }
}

/// The job handler.
pub struct BacktestSweep {
    pub plugins: Arc<PluginRegistry>,
    pub queue: Arc<dyn JobQueue>,
    pub max_attempts: u32,
}

#[async_trait::async_trait]
impl JobHandler for BacktestSweep {
    fn kind(&self) -> &'static str {
        SWEEP_KIND
    }
    fn queue(&self) -> &'static str {
        qb_jobs::QUEUE_BACKTEST
    }
    fn description(&self) -> &'static str {
        "Expand a parameter grid into backtest.run jobs (POST /api/v1/sweeps enqueues these)"
    }
    fn trader_may_enqueue(&self) -> bool {
        true
    }
    async fn check(&self, params: serde_json::Value) -> Result<serde_json::Value, FieldError> {
        let mut spec: SweepSpec =
            serde_json::from_value(params).map_err(|e| ("params".to_string(), e.to_string()))?;
        spec.base = check_spec(&self.plugins, spec.base, &spec.grid)
            .await
            .map_err(|(f, m)| {
                if f.starts_with("grid.") {
                    (f, m)
                } else {
                    (format!("base.{f}"), m)
                }
            })?;
        spec.combinations().map_err(|e| ("grid".to_string(), e))?;
        serde_json::to_value(&spec).map_err(|e| ("params".to_string(), e.to_string()))
    }
    fn run(
        &self,
        ctx: &JobContext<'_>,
        params: &serde_json::Value,
    ) -> Result<serde_json::Value, JobError> {
        let spec: SweepSpec = serde_json::from_value(params.clone()).map_err(JobError::failed)?;
        let combos = spec.combinations().map_err(JobError::Failed)?;
        let mut children = Vec::with_capacity(combos.len());
        for (i, p) in combos.into_iter().enumerate() {
            let child = BacktestSpec {
                params: p,
                ..spec.base.clone()
            };
            let job = ctx
                .block_on(self.queue.enqueue(NewJob {
                    queue: qb_jobs::QUEUE_BACKTEST.into(),
                    kind: KIND.into(),
                    params: serde_json::to_value(&child).map_err(JobError::failed)?,
                    max_attempts: self.max_attempts,
                    created_by: ctx.job().created_by.clone(),
                    schedule_id: None,
                }))
                .map_err(JobError::failed)?;
            children.push(job.id);
            ctx.progress(
                (i + 1) as f64 / children.capacity().max(1) as f64,
                "queueing runs",
            )?;
        }
        Ok(serde_json::json!({ "children": children }))
    }
}
