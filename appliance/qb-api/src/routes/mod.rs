//! Route handlers, one module per resource.

pub mod audit;
pub mod backtests;
pub mod backups;
pub mod dashboard;
pub mod health;
pub mod instruments;
pub mod jobs;
pub mod keys;
pub mod market;
pub mod plugins;
pub mod schedules;
pub mod strategies;
pub mod system;
pub mod tick_input;
pub mod trading;
pub mod users;
pub mod ws;

use qb_core::model::PageRequest;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;

/// `?page=&page_size=` on every list endpoint.
#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1-based page number (default 1).
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// Items per page (default `DEFAULT_PAGE_SIZE`, at most `MAX_PAGE_SIZE`).
    #[param(minimum = 1)]
    pub page_size: Option<u32>,
}

impl PageParams {
    pub fn resolve(&self, state: &AppState) -> ApiResult<PageRequest> {
        let page = self.page.unwrap_or(1);
        if page == 0 {
            return Err(ApiError::invalid("page", "pages are numbered from 1"));
        }
        let max = state.config.max_page_size;
        let page_size = self.page_size.unwrap_or(state.config.default_page_size);
        if page_size == 0 || page_size > max {
            return Err(ApiError::invalid(
                "page_size",
                format!("{page_size} is not between 1 and {max}"),
            ));
        }
        Ok(PageRequest { page, page_size })
    }
}
