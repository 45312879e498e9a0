//! Waiting with a deadline: every loop in the tests is bounded in time, and a wait that runs
//! out says what it waited for.

use std::future::Future;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How often `eventually` looks again.
pub const POLL: Duration = Duration::from_millis(50);

/// Calls `attempt` until it returns `Ok`, sleeping `every` between attempts, for at most
/// `within`: the first `Ok`, or the last `Err` once the deadline has passed.
pub async fn retry<T, E, F, Fut>(within: Duration, every: Duration, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + within;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// Waits until `check` holds, looking every 50 ms; panics naming `what` once `within` has
/// passed.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let held = retry(within, POLL, || {
        let check = check();
        async move { check.await.then_some(()).ok_or(()) }
    })
    .await;
    assert!(held.is_ok(), "not within {within:?}: {what}");
}

/// The exit status of `child` if it exits within `within` (looked at every 20 ms).
pub fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
