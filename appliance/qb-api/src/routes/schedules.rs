//! `/api/v1/schedules`: persisted cron schedules (changes: admin only).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use qb_core::model::{JobSpec, NewSchedule, Page, Role, Schedule, ScheduleUpdate};
use qb_jobs::{Scheduler, normalize_cron};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::PageParams;
use crate::auth::Principal;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_schedules, create_schedule))
        .routes(routes!(get_schedule, update_schedule, delete_schedule))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewScheduleRequest {
    /// 1 to 100 characters (surrounding spaces trimmed).
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// `sec min hour dom month dow` (UTC); 5-field expressions get second 0.
    pub cron: String,
    pub job: JobSpec,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SchedulePatch {
    pub cron: Option<String>,
    pub job: Option<JobSpec>,
    pub enabled: Option<bool>,
}

/// The job as the schedule keeps it: checked by its kind, with what the
/// check pins (a backtest's plugin by hash, so every run of the schedule
/// runs the same plugin).
async fn check_job(state: &AppState, job: JobSpec) -> ApiResult<JobSpec> {
    let new = state
        .registry
        .prepare(&job, None, 1)
        .await
        .map_err(|(field, msg)| ApiError::invalid(&format!("job.{field}"), msg))?;
    Ok(JobSpec {
        params: new.params,
        ..job
    })
}

/// Applies an edit on this node's scheduler at once and announces it to
/// every other scheduler node.
async fn reload(state: &AppState, id: &str) {
    if let Some(s) = state.scheduler() {
        s.reload(id).await;
    }
    state.pubsub.publish(
        qb_jobs::scheduler::SCHEDULES_TOPIC,
        serde_json::json!({ "id": id }),
    );
}

/// List schedules with their next run.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules", security(("bearer" = [])),
    params(PageParams), responses((status = 200, body = Page<Schedule>)))]
async fn list_schedules(
    State(state): State<AppState>,
    _p: Principal,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<Schedule>>> {
    let mut page = state.jobs.list_schedules(page.resolve(&state)?).await?;
    page.items = page.items.into_iter().map(Scheduler::annotate).collect();
    Ok(Json(page))
}

/// Create a schedule.
#[utoipa::path(post, path = "/api/v1/schedules", tag = "schedules", security(("bearer" = [])),
    request_body = NewScheduleRequest,
    responses((status = 201, body = Schedule), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_schedule(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<NewScheduleRequest>,
) -> ApiResult<(StatusCode, Json<Schedule>)> {
    p.require(Role::Admin)?;
    let name = req.name.trim().to_string();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::invalid("name", "must be 1 to 100 characters"));
    }
    let cron = normalize_cron(&req.cron).map_err(|e| ApiError::invalid("cron", e))?;
    let job = check_job(&state, req.job).await?;
    let s = state
        .jobs
        .create_schedule(NewSchedule {
            name,
            cron,
            job,
            enabled: req.enabled,
        })
        .await?;
    reload(&state, &s.id).await;
    Ok((StatusCode::CREATED, Json(Scheduler::annotate(s))))
}

/// One schedule.
#[utoipa::path(get, path = "/api/v1/schedules/{id}", tag = "schedules", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Schedule), (status = 404, body = Problem)))]
async fn get_schedule(
    State(state): State<AppState>,
    _p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Schedule>> {
    state
        .jobs
        .get_schedule(&id)
        .await?
        .map(|s| Json(Scheduler::annotate(s)))
        .ok_or_else(|| ApiError::not_found(format!("schedule {id} not found")))
}

/// Change a schedule's cron expression, job or enabled flag.
#[utoipa::path(patch, path = "/api/v1/schedules/{id}", tag = "schedules", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = SchedulePatch,
    responses((status = 200, body = Schedule), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_schedule(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SchedulePatch>,
) -> ApiResult<Json<Schedule>> {
    p.require(Role::Admin)?;
    let cron = req
        .cron
        .as_deref()
        .map(normalize_cron)
        .transpose()
        .map_err(|e| ApiError::invalid("cron", e))?;
    let job = match req.job {
        Some(job) => Some(check_job(&state, job).await?),
        None => None,
    };
    let s = state
        .jobs
        .update_schedule(
            &id,
            ScheduleUpdate {
                cron,
                job,
                enabled: req.enabled,
                disabled_reason: None,
            },
        )
        .await?;
    reload(&state, &id).await;
    Ok(Json(Scheduler::annotate(s)))
}

/// Delete a schedule.
#[utoipa::path(delete, path = "/api/v1/schedules/{id}", tag = "schedules", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204), (status = 404, body = Problem)))]
async fn delete_schedule(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    p.require(Role::Admin)?;
    state.jobs.delete_schedule(&id).await?;
    reload(&state, &id).await;
    Ok(StatusCode::NO_CONTENT)
}
