//! Capped exponential backoff with jitter, shared by every stage that talks to a service
//! which may be briefly away (object stores, catalogs, the broker).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often and how patiently a transient failure is retried.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry).
    pub attempts: u32,
    /// Delay before the first retry, in milliseconds; doubled for each further one.
    pub initial_backoff_ms: u64,
    /// Cap of the delay between two attempts, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based): exponential, capped, with
    /// "equal jitter" (between half and all of it) so that many workers retrying at once
    /// spread out instead of hammering a recovering service together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self
            .initial_backoff_ms
            .saturating_mul(1u64 << exp)
            .min(self.max_backoff_ms.max(1));
        let half = full / 2;
        Duration::from_millis(half + fastrand::u64(0..=full - half))
    }

    /// The delay to wait after a failure: the server's own hint (Retry-After) when it
    /// gave one, capped like the rest, else [`RetryPolicy::backoff`].
    pub fn delay(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        match hint {
            Some(h) => h.min(Duration::from_millis(self.max_backoff_ms.max(1))),
            None => self.backoff(attempt),
        }
    }

    /// Runs `op` until it succeeds, fails permanently (`is_transient` false), or the
    /// attempts are spent; returns the last error with the number of attempts made.
    pub async fn run<T, E, F, Fut>(
        &self,
        mut op: F,
        is_transient: impl Fn(&E) -> bool,
    ) -> Result<T, (E, u32)>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) && attempt < self.attempts.max(1) => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err((e, attempt)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_stays_under_the_cap() {
        let p = RetryPolicy {
            attempts: 10,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
        };
        for _ in 0..50 {
            let first = p.backoff(1).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let third = p.backoff(3).as_millis();
            assert!((200..=400).contains(&third), "{third}");
            let late = p.backoff(40).as_millis();
            assert!((500..=1_000).contains(&late), "{late}");
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
    }

    #[tokio::test]
    async fn run_retries_transient_errors_only() {
        let p = RetryPolicy {
            attempts: 4,
            initial_backoff_ms: 1,
            max_backoff_ms: 2,
        };
        let r: Result<(), (&str, u32)> = p.run(|_| async { Err("down") }, |_| true).await;
        assert_eq!(r, Err(("down", 4)));
        let r: Result<(), (&str, u32)> = p.run(|_| async { Err("bad") }, |_| false).await;
        assert_eq!(r, Err(("bad", 1)));
        let r = p
            .run(
                |a| async move { if a < 3 { Err("down") } else { Ok(a) } },
                |_| true,
            )
            .await;
        assert_eq!(r, Ok(3));
    }
}
