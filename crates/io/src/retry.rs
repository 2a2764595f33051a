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

    /// Runs `op` until it succeeds, fails permanently, or the attempts are spent; waits
    /// between attempts as [`RetryPolicy::delay`] says (the error's own hint first).
    /// Returns the value, or the last error, with the number of attempts made. `what`
    /// names the operation in the warning logged before each retry.
    pub async fn run<T, E, F, Fut>(&self, what: &str, mut op: F) -> Result<(T, u32), (E, u32)>
    where
        E: Retryable + std::fmt::Display,
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            match op(attempt).await {
                Ok(v) => return Ok((v, attempt)),
                Err(e) if e.is_transient() && attempt < self.attempts.max(1) => {
                    let delay = self.delay(attempt, e.retry_after());
                    tracing::warn!("{what}: {e} (attempt {attempt}; retrying in {delay:?})");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err((e, attempt)),
            }
        }
    }
}

/// An error [`RetryPolicy::run`] can judge.
pub trait Retryable {
    /// True when the same operation may succeed later.
    fn is_transient(&self) -> bool;
    /// How long the service asked to be left alone (HTTP Retry-After), when it said.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

impl Retryable for crate::IoError {
    fn is_transient(&self) -> bool {
        crate::IoError::is_transient(self)
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

    #[derive(Debug, PartialEq)]
    struct Trouble {
        transient: bool,
        hint: Option<Duration>,
    }
    impl std::fmt::Display for Trouble {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "trouble")
        }
    }
    impl Retryable for Trouble {
        fn is_transient(&self) -> bool {
            self.transient
        }
        fn retry_after(&self) -> Option<Duration> {
            self.hint
        }
    }
    const DOWN: Trouble = Trouble {
        transient: true,
        hint: None,
    };
    const BAD: Trouble = Trouble {
        transient: false,
        hint: None,
    };

    #[tokio::test]
    async fn run_retries_transient_errors_only() {
        let p = RetryPolicy {
            attempts: 4,
            initial_backoff_ms: 1,
            max_backoff_ms: 2,
        };
        let r: Result<((), u32), _> = p.run("op", |_| async { Err(DOWN) }).await;
        assert_eq!(r, Err((DOWN, 4)));
        let r: Result<((), u32), _> = p.run("op", |_| async { Err(BAD) }).await;
        assert_eq!(r, Err((BAD, 1)));
        let r = p
            .run(
                "op",
                |a| async move { if a < 3 { Err(DOWN) } else { Ok(a) } },
            )
            .await;
        assert_eq!(r, Ok((3, 3)));
    }

    #[tokio::test(start_paused = true)]
    async fn run_waits_as_long_as_the_server_asks_within_the_cap() {
        let p = RetryPolicy {
            attempts: 2,
            initial_backoff_ms: 1,
            max_backoff_ms: 5_000,
        };
        let started = tokio::time::Instant::now();
        let r = p
            .run("op", |a| async move {
                if a == 1 {
                    Err(Trouble {
                        transient: true,
                        hint: Some(Duration::from_secs(3)),
                    })
                } else {
                    Ok(a)
                }
            })
            .await;
        assert_eq!(r, Ok((2, 2)));
        assert!(started.elapsed() >= Duration::from_secs(3));
    }
}
