//! The one waiter of every AWS step: polls the API until an operation has converged, as the
//! AWS CLI's `aws eks wait` / `aws rds wait` do, with exponential backoff and jitter,
//! progress lines showing the status the API reports, throttling and transient errors
//! retried, a terminal failure status failing at once with the API's reason, the step's
//! `timeout`, and cancellation through [`StepContext::cancel`].
//!
//! Progress lines (`ADDRESS: WHAT: STATUS [Ns elapsed]`, on each change of status and every
//! 30 s) go through [`crate::provider::report_progress`] to apply's reporter.
//!
//! A step builds a [`Waiter`] when it starts to act (the deadline counts from then), then
//! calls [`Waiter::wait`] with a poll function that answers a [`Poll`]:
//!
//! ```text
//! let waiter = Waiter::new(ctx, format!("update {id} of cluster `{name}`"));
//! // ... send the operation ...
//! let done = waiter
//!     .wait(ctx, || async {
//!         let u = describe_update(...).await.map_err(|e| transient_or_fatal("DescribeUpdate", e))?;
//!         Ok(match u.status {
//!             "Successful" => Poll::Done(u),
//!             "Failed" => Poll::Failed(reason(&u)),
//!             s => Poll::Pending(s.to_string()),
//!         })
//!     })
//!     .await?;
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_eks::error::{ProvideErrorMetadata, SdkError};

use super::sdk_error;
use crate::provider::{ProviderError, StepContext};

/// First delay between polls unless `OPSCTL_AWS_POLL_INITIAL` (seconds, e.g. `0.2`) says
/// otherwise (tests use a short one).
pub const INITIAL_DELAY: Duration = Duration::from_secs(1);
/// Longest delay between polls unless `OPSCTL_AWS_POLL_MAX` (seconds) says otherwise.
pub const MAX_DELAY: Duration = Duration::from_secs(15);
/// Polls in a row that may fail with a throttling or transient error (each already retried
/// by the SDK's own retry policy, `max_attempts` of the provider block) before the wait gives
/// up with the last error.
pub const MAX_TRANSIENT_FAILURES: u32 = 5;
/// A progress line repeats the unchanged status at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// The waiter stops this much before the step's timeout, so that it fails with the last
/// status it saw rather than being stopped by the engine.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// What one poll found.
#[derive(Debug)]
pub enum Poll<T> {
    /// Converged: the wait returns this value.
    Done(T),
    /// Still in progress; the status the API reports (`UPDATING`, `modifying`, `InProgress`),
    /// shown in progress lines and in a timeout's message.
    Pending(String),
    /// A terminal failure status: the wait fails at once with this reason (the API's own
    /// words, e.g. an update's `errors`).
    Failed(String),
}

/// Why a poll could not tell.
#[derive(Debug)]
pub enum PollError {
    /// Throttling, a 5xx answer, a timeout or a connection failure: poll again (at most
    /// [`MAX_TRANSIENT_FAILURES`] times in a row).
    Transient(ProviderError),
    /// Anything else (not found, access denied, validation): the wait fails with it.
    Fatal(ProviderError),
}

impl From<ProviderError> for PollError {
    fn from(e: ProviderError) -> PollError {
        PollError::Fatal(e)
    }
}

/// Error codes the AWS SDKs retry as throttling (smithy's `THROTTLING_ERRORS`) or transient.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
];

/// Whether an SDK error is worth polling again: a throttling or transient error code, an
/// HTTP 5xx answer, a timeout, or a connection that failed or gave no valid response.
pub fn is_retryable<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => {
            se.err()
                .code()
                .is_some_and(|c| RETRYABLE_CODES.contains(&c))
                || se.raw().status().is_server_error()
        }
        _ => false,
    }
}

/// An SDK error of `operation` as a [`PollError`]: [`PollError::Transient`] when
/// [`is_retryable`], else [`PollError::Fatal`]; the message is [`sdk_error`]'s.
pub fn transient_or_fatal<E>(operation: &str, err: SdkError<E>) -> PollError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let retry = is_retryable(&err);
    let e = sdk_error(operation, err);
    if retry {
        PollError::Transient(e)
    } else {
        PollError::Fatal(e)
    }
}

fn env_secs(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
}

/// A random factor in [0.5, 1.0) ("equal jitter").
fn jitter() -> f64 {
    let mut b = [0u8; 2];
    if getrandom::getrandom(&mut b).is_err() {
        return 0.75;
    }
    0.5 + f64::from(u16::from_le_bytes(b)) / 131_072.0
}

/// One wait of one step (see the module documentation).
#[derive(Debug, Clone)]
pub struct Waiter {
    what: String,
    address: String,
    started: Instant,
    timeout: Duration,
    initial: Duration,
    max: Duration,
}

impl Waiter {
    /// A waiter for `what` (e.g. "update 1a2b of cluster `prod`"), whose deadline is the
    /// step's `timeout` counted from now (less half a second, so that it fails with the
    /// status it saw before the engine stops the step). Delays between polls: from 1 s
    /// (`OPSCTL_AWS_POLL_INITIAL`), doubling, up to 15 s (`OPSCTL_AWS_POLL_MAX`), each with
    /// jitter (50-100 % of the step).
    pub fn new(ctx: &StepContext, what: impl Into<String>) -> Waiter {
        let max = env_secs("OPSCTL_AWS_POLL_MAX").unwrap_or(MAX_DELAY);
        Waiter {
            what: what.into(),
            address: ctx.address.clone(),
            started: Instant::now(),
            timeout: ctx.timeout.saturating_sub(DEADLINE_MARGIN),
            initial: env_secs("OPSCTL_AWS_POLL_INITIAL")
                .unwrap_or(INITIAL_DELAY)
                .min(max),
            max,
        }
    }

    /// What this waiter waits for.
    pub fn what(&self) -> &str {
        &self.what
    }

    fn progress(&self, status: &str) {
        crate::provider::report_progress(&format!(
            "{}: {}: {status} [{}s elapsed]",
            self.address,
            self.what,
            self.started.elapsed().as_secs()
        ));
    }

    /// Polls `poll` until it answers [`Poll::Done`] (returns its value), at once and then
    /// after each delay.
    ///
    /// # Errors
    ///
    /// - [`Poll::Failed`]: "`what` failed: REASON", at once;
    /// - a [`PollError::Fatal`] error, at once; the last [`PollError::Transient`] one after
    ///   [`MAX_TRANSIENT_FAILURES`] in a row ("gave up after N throttled or transient
    ///   errors");
    /// - the deadline: "timed out after Ns waiting for `what` (last status: S)";
    /// - [`StepContext::cancel`]: "stopped while waiting for `what` (last status: S)".
    pub async fn wait<T, F, Fut>(&self, ctx: &StepContext, mut poll: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Poll<T>, PollError>>,
    {
        let mut delay = self.initial;
        let mut last_status: Option<String> = None;
        let mut last_shown = Instant::now();
        let mut transient = 0u32;
        loop {
            let polled = tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return Err(self.stopped(&last_status)),
                r = poll() => r,
            };
            match polled {
                Ok(Poll::Done(v)) => return Ok(v),
                Ok(Poll::Failed(reason)) => {
                    return Err(ProviderError::new(format!(
                        "{} failed: {reason}",
                        self.what
                    )))
                }
                Ok(Poll::Pending(status)) => {
                    transient = 0;
                    if last_status.as_deref() != Some(status.as_str())
                        || last_shown.elapsed() >= PROGRESS_EVERY
                    {
                        self.progress(&status);
                        last_shown = Instant::now();
                    }
                    last_status = Some(status);
                }
                Err(PollError::Fatal(e)) => return Err(e),
                Err(PollError::Transient(e)) => {
                    transient += 1;
                    if transient >= MAX_TRANSIENT_FAILURES {
                        return Err(ProviderError::new(format!(
                            "gave up waiting for {} after {transient} throttled or transient errors in a row: {e}",
                            self.what
                        )));
                    }
                    self.progress(&format!("retrying after: {e}"));
                }
            }
            let left = self.timeout.saturating_sub(self.started.elapsed());
            if left.is_zero() {
                return Err(ProviderError::new(format!(
                    "timed out after {}s waiting for {} (last status: {})",
                    self.timeout.as_secs_f64().round(),
                    self.what,
                    last_status.as_deref().unwrap_or("unknown")
                )));
            }
            let sleep = delay.mul_f64(jitter()).min(left);
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return Err(self.stopped(&last_status)),
                _ = tokio::time::sleep(sleep) => {}
            }
            delay = (delay * 2).min(self.max);
        }
    }

    fn stopped(&self, last: &Option<String>) -> ProviderError {
        ProviderError::new(format!(
            "stopped while waiting for {} (last status: {})",
            self.what,
            last.as_deref().unwrap_or("unknown")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn ctx(timeout: Duration) -> StepContext {
        StepContext {
            address: "step.t.x".into(),
            target: "t".into(),
            provider: None,
            timeout,
            read_timeout: timeout,
            planned_state: None,
            cancel: Default::default(),
            prepared: None,
        }
    }

    fn fast(ctx: &StepContext) -> Waiter {
        let mut w = Waiter::new(ctx, "thing");
        w.initial = Duration::from_millis(5);
        w.max = Duration::from_millis(20);
        w
    }

    #[tokio::test]
    async fn pending_then_done_returns_the_value() {
        let c = ctx(Duration::from_secs(10));
        let n = AtomicU32::new(0);
        let v = fast(&c)
            .wait(&c, || async {
                Ok(if n.fetch_add(1, Ordering::SeqCst) < 3 {
                    Poll::Pending("UPDATING".into())
                } else {
                    Poll::Done(7)
                })
            })
            .await
            .unwrap();
        assert_eq!((v, n.load(Ordering::SeqCst)), (7, 4));
    }

    #[tokio::test]
    async fn a_failed_status_fails_at_once_with_the_reason() {
        let c = ctx(Duration::from_secs(10));
        let e = fast(&c)
            .wait(&c, || async {
                Ok::<Poll<()>, _>(Poll::Failed("NodeCreationFailure: no".into()))
            })
            .await
            .unwrap_err();
        assert_eq!(e.message, "thing failed: NodeCreationFailure: no");
    }

    #[tokio::test]
    async fn transient_errors_are_retried_then_given_up() {
        let c = ctx(Duration::from_secs(10));
        let n = AtomicU32::new(0);
        let v = fast(&c)
            .wait(&c, || async {
                if n.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(PollError::Transient(ProviderError::new("Throttling")))
                } else {
                    Ok(Poll::Done(1))
                }
            })
            .await
            .unwrap();
        assert_eq!(v, 1);
        let e = fast(&c)
            .wait(&c, || async {
                Err::<Poll<()>, _>(PollError::Transient(ProviderError::new("Rate exceeded")))
            })
            .await
            .unwrap_err();
        assert!(
            e.message
                .contains("gave up waiting for thing after 5 throttled"),
            "{e}"
        );
        assert!(e.message.contains("Rate exceeded"), "{e}");
    }

    #[tokio::test]
    async fn the_timeout_names_the_last_status() {
        let c = ctx(Duration::from_millis(700));
        let e = fast(&c)
            .wait(&c, || async {
                Ok::<Poll<()>, _>(Poll::Pending("modifying".into()))
            })
            .await
            .unwrap_err();
        assert!(e.message.starts_with("timed out after"), "{e}");
        assert!(e.message.ends_with("(last status: modifying)"), "{e}");
    }

    #[tokio::test]
    async fn cancellation_stops_the_wait() {
        let c = ctx(Duration::from_secs(60));
        c.cancel.cancel();
        let e = fast(&c)
            .wait(&c, || async {
                Ok::<Poll<()>, _>(Poll::Pending("UPDATING".into()))
            })
            .await
            .unwrap_err();
        assert!(
            e.message.starts_with("stopped while waiting for thing"),
            "{e}"
        );
    }
}
