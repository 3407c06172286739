//! Retrying start-up connections while a backend comes up (the seed's
//! entrypoint waited for PostgreSQL and Redis the same way).

use std::future::Future;
use std::time::{Duration, Instant};

use crate::{StoreError, StoreResult};

/// Runs `attempt` until it succeeds or `timeout` has passed (a last try at
/// the deadline), pausing 250 ms and then twice as long after each failure
/// (at most 5 s), logging each.
/// `Invalid` errors (a malformed URL, say) are not retried.
pub async fn retry<T, F, Fut>(what: &str, timeout: Duration, mut attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(250);
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e @ StoreError::Invalid(_)) => return Err(e),
            Err(e) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(StoreError::Backend(format!(
                        "{what} unreachable (gave up after {} s): {e}",
                        timeout.as_secs()
                    )));
                }
                let wait = pause.min(left);
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "{what} not reachable yet");
                tokio::time::sleep(wait).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_until_success_then_gives_up() {
        let n = AtomicU32::new(0);
        let got = retry("probe", Duration::from_secs(10), || async {
            if n.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(StoreError::Backend("down".into()))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(got.unwrap(), 7);
        assert_eq!(n.load(Ordering::SeqCst), 4);

        let failed: StoreResult<()> = retry("probe", Duration::from_secs(2), || async {
            Err(StoreError::Backend("still down".into()))
        })
        .await;
        let msg = failed.unwrap_err().to_string();
        assert!(
            msg.contains("probe unreachable") && msg.contains("still down"),
            "{msg}"
        );

        let invalid: StoreResult<()> = retry("probe", Duration::from_secs(60), || async {
            Err(StoreError::Invalid("bad url".into()))
        })
        .await;
        assert!(matches!(invalid, Err(StoreError::Invalid(_))));
    }
}
