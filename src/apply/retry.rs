//! A step's `retry { attempts, initial, max, multiplier, on }`: which failed attempts are
//! tried again and after how long (exponential backoff with "equal jitter", as the AWS
//! SDKs' standard retry strategy and `aws/waiter.rs` do).

use std::time::Duration;

use crate::config::execution::Retry;
use crate::provider::ProviderError;

/// The delay before attempt `tried + 1`, when attempt `tried` (1-based, counted in this
/// process) failed with `err`; None when it is not retried: no `retry`, attempts used up, or
/// an error the provider did not mark transient without `on = "any"`.
pub fn next_delay(retry: Option<&Retry>, err: &ProviderError, tried: u32) -> Option<Duration> {
    let r = retry?;
    if tried >= r.attempts || !(r.any || err.transient) {
        return None;
    }
    Some(backoff(r, tried).mul_f64(jitter()))
}

/// `initial * multiplier^(tried-1)`, at most `max` (no jitter).
pub fn backoff(r: &Retry, tried: u32) -> Duration {
    let exp = i32::try_from(tried.saturating_sub(1)).unwrap_or(i32::MAX);
    let secs = r.initial.as_secs_f64() * r.multiplier.powi(exp);
    if !secs.is_finite() || secs >= r.max.as_secs_f64() {
        r.max
    } else {
        Duration::from_secs_f64(secs)
    }
}

/// A random factor in [0.5, 1.0).
fn jitter() -> f64 {
    let mut b = [0u8; 2];
    if getrandom::getrandom(&mut b).is_err() {
        return 0.75;
    }
    0.5 + f64::from(u16::from_le_bytes(b)) / 131_072.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(any: bool) -> Retry {
        Retry {
            attempts: 3,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(3),
            multiplier: 2.0,
            any,
        }
    }

    #[test]
    fn exponential_capped_and_jittered() {
        assert_eq!(backoff(&r(true), 1), Duration::from_secs(1));
        assert_eq!(backoff(&r(true), 2), Duration::from_secs(2));
        assert_eq!(backoff(&r(true), 3), Duration::from_secs(3));
        let d = next_delay(Some(&r(true)), &ProviderError::new("x"), 2).unwrap();
        assert!(
            d >= Duration::from_secs(1) && d < Duration::from_secs(2),
            "{d:?}"
        );
    }

    #[test]
    fn only_transient_unless_any_and_attempts_bound() {
        let plain = ProviderError::new("x");
        let transient = ProviderError::new_transient("x");
        assert!(next_delay(Some(&r(false)), &plain, 1).is_none());
        assert!(next_delay(Some(&r(false)), &transient, 1).is_some());
        assert!(next_delay(Some(&r(true)), &plain, 3).is_none());
        assert!(next_delay(None, &transient, 1).is_none());
    }
}
