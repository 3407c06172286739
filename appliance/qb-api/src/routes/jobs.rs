//! `/api/v1/jobs` and `/api/v1/queues`: the job queues.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use qb_core::model::{Job, JobFilter, JobSpec, JobState, Page, QueueStats, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::PageParams;
use crate::auth::Principal;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs, enqueue))
        .routes(routes!(job_kinds))
        .routes(routes!(get_job))
        .routes(routes!(cancel_job))
        .routes(routes!(queues))
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct JobListParams {
    /// 1-based page number (default 1).
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// Items per page (default `DEFAULT_PAGE_SIZE`, at most `MAX_PAGE_SIZE`).
    #[param(minimum = 1)]
    pub page_size: Option<u32>,
    pub queue: Option<String>,
    pub state: Option<JobState>,
    pub kind: Option<String>,
    /// Jobs enqueued by this user (and their API keys), or by another
    /// actor (`schedule:name`).
    pub created_by: Option<String>,
}

/// List jobs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", security(("bearer" = [])),
    params(JobListParams), responses((status = 200, body = Page<Job>), (status = 400, body = Problem)))]
async fn list_jobs(
    State(state): State<AppState>,
    _p: Principal,
    ApiQuery(q): ApiQuery<JobListParams>,
) -> ApiResult<Json<Page<Job>>> {
    let page = PageParams {
        page: q.page,
        page_size: q.page_size,
    }
    .resolve(&state)?;
    let filter = JobFilter {
        queue: q.queue,
        state: q.state,
        kind: q.kind,
        created_by: q.created_by,
    };
    Ok(Json(state.jobs.list(&filter, page).await?))
}

/// Enqueue a job of a registered kind.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", security(("bearer" = [])),
    request_body = JobSpec,
    responses((status = 202, body = Job), (status = 403, body = Problem), (status = 422, body = Problem),
        (status = 429, description = "queues.max_active_per_user of your jobs are queued or running on that queue", body = Problem)))]
async fn enqueue(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(spec): ApiJson<JobSpec>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    if let Some(h) = state.registry.get(&spec.kind) {
        p.require(if h.trader_may_enqueue() {
            Role::Trader
        } else {
            Role::Admin
        })?;
    }
    Ok((StatusCode::ACCEPTED, Json(submit(&state, &p, &spec).await?)))
}

/// How every route starts a job for a caller: the kind's one check, then,
/// for anyone but an admin, room under `queues.max_active_per_user` on the
/// job's queue (the user's jobs and their API keys' together; checked
/// before the enqueue, so parallel requests may pass it together by a
/// few), then the enqueue.
pub(crate) async fn submit(state: &AppState, p: &Principal, spec: &JobSpec) -> ApiResult<Job> {
    let new = state
        .registry
        .prepare(spec, Some(p.actor()), state.config.queues.max_attempts)
        .await
        .map_err(|(field, msg)| ApiError::invalid(&field, msg))?;
    if p.role != Role::Admin {
        let cap = state.config.queues.max_active_per_user;
        let mut active = 0;
        for s in [JobState::Queued, JobState::Running] {
            let filter = JobFilter {
                queue: Some(new.queue.clone()),
                state: Some(s),
                created_by: Some(p.username.clone()),
                ..JobFilter::default()
            };
            let one = qb_core::model::PageRequest {
                page: 1,
                page_size: 1,
            };
            active += state.jobs.list(&filter, one).await?.total;
        }
        if active >= cap {
            return Err(ApiError::too_many(
                format!(
                    "{active} of your jobs are queued or running on the {} queue (at most {cap}); \
                     wait for some to finish",
                    new.queue
                ),
                5,
            ));
        }
    }
    Ok(state.jobs.enqueue(new).await?)
}

#[derive(Serialize, ToSchema)]
pub struct JobKind {
    pub kind: String,
    pub queue: String,
    pub description: String,
    pub admin_only: bool,
}

/// Job kinds this server runs.
#[utoipa::path(get, path = "/api/v1/jobs/kinds", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, body = Vec<JobKind>)))]
async fn job_kinds(State(state): State<AppState>, _p: Principal) -> Json<Vec<JobKind>> {
    Json(
        state
            .registry
            .kinds()
            .into_iter()
            .map(|k| JobKind {
                kind: k.kind,
                queue: k.queue,
                description: k.description,
                admin_only: k.admin_only,
            })
            .collect(),
    )
}

/// One job.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Job), (status = 404, body = Problem)))]
async fn get_job(
    State(state): State<AppState>,
    _p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Job>> {
    state
        .jobs
        .get(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))
}

/// Cancel a job: at once when queued, at its next check when running.
/// Only the job's submitter or an admin may.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Job), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn cancel_job(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Job>> {
    p.require(Role::Trader)?;
    let job = state
        .jobs
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))?;
    p.require_owner(job.created_by.as_deref(), &format!("job {id}"))?;
    Ok(Json(state.jobs.request_cancel(&id).await?))
}

#[derive(Serialize, ToSchema)]
pub struct QueueView {
    #[serde(flatten)]
    pub stats: QueueStats,
    /// Worker threads serving the queue on the node that answered.
    pub concurrency: usize,
}

/// Queues with their backlog.
#[utoipa::path(get, path = "/api/v1/queues", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, body = Vec<QueueView>)))]
async fn queues(State(state): State<AppState>, _p: Principal) -> ApiResult<Json<Vec<QueueView>>> {
    let stats = state.jobs.stats(qb_jobs::QUEUES).await?;
    Ok(Json(
        stats
            .into_iter()
            .map(|s| QueueView {
                concurrency: qb_jobs::threads(&state.config, &s.queue),
                stats: s,
            })
            .collect(),
    ))
}
