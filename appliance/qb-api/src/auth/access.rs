//! Who may act on which paper account, and who may feed market data
//! (`SECURITY.md`, "Accounts"). Every trading route, the strategy routes
//! and `/ws` ask [`Reach::allows`] through [`Principal::reach`] or
//! [`Principal::require_account`]; nothing else decides it.
//!
//! - An admin user reaches every account; anyone else the accounts granted
//!   to them (`MetaStore::account_grants`). An API key reaches what its
//!   owner reaches, within the key's role.
//! - Within reach, the role decides what: viewers read, traders trade.
//! - Outside reach the answer is 403 whether or not the account exists,
//!   so a refusal reveals nothing about other accounts.
//! - Live ticks and replays (they drive the paper broker's fills) need the
//!   feed permission: admins, or users an admin gave it to.

use std::collections::BTreeSet;

use qb_core::model::Role;

use crate::auth::Principal;
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;

/// The accounts a principal reaches.
#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    /// An admin (or an admin's API key): every account.
    All,
    /// The accounts granted to the user.
    Granted(BTreeSet<String>),
}

impl Reach {
    /// Whether `account` is within reach: the one answer to "may this
    /// principal act on this account".
    pub fn allows(&self, account: &str) -> bool {
        match self {
            Reach::All => true,
            Reach::Granted(names) => names.contains(account),
        }
    }
}

impl Principal {
    /// The accounts this principal reaches (read from the metadata store,
    /// so a grant or revocation counts from the next request on).
    pub async fn reach(&self, state: &AppState) -> ApiResult<Reach> {
        if self.user_role == Role::Admin {
            return Ok(Reach::All);
        }
        let grants = state.meta.account_grants(None, Some(self.user_id)).await?;
        Ok(Reach::Granted(
            grants.into_iter().map(|g| g.account).collect(),
        ))
    }

    /// 403 unless the caller has `role` (viewer: read, trader: trade) and
    /// reaches `account`.
    pub async fn require_account(
        &self,
        state: &AppState,
        account: &str,
        role: Role,
    ) -> ApiResult<()> {
        self.require(role)?;
        if self.reach(state).await?.allows(account) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "account {account:?} is not granted to you; an admin grants accounts"
            )))
        }
    }

    /// 403 unless the caller may publish market data that drives fills
    /// (a trader or above with the feed permission, or an admin).
    pub fn require_feed(&self) -> ApiResult<()> {
        self.require(Role::Trader)?;
        if self.feed || self.user_role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "live market data drives paper fills: this needs the feed permission, which an admin grants (PATCH /api/v1/users/{username} {\"feed\": true})",
            ))
        }
    }
}
