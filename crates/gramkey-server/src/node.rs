//! One node: the listener and every background task `gramkey serve` runs, started together
//! and stopped together. The CLI and the tests build nodes the same way:
//!
//! ```text
//! Node::new(state, listener)
//!     .transport(transport)
//!     .janitor(retention, Duration::from_secs(300))
//!     .callbacks(Duration::from_secs(1))
//!     .run_until(ctrl_c)
//!     .await?;
//! ```
//!
//! On shutdown the listener stops accepting and drains its connections, then a stop signal
//! reaches every task; a pass under way (a round of callbacks) finishes first, except the
//! janitor's, which is paced and may last minutes: it ends at once, its batch under way
//! committed by the store all the same. Finally the usage counted since the last flush is
//! written.

use std::future::Future;
use std::time::Duration;

use gramkey_domain::retention::Retention;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::callbacks::Deliverer;
use crate::state::AppState;
use crate::transport::{self, ConnectionLimits, Transport};

/// How often app usage counted in memory is added to the store.
const USAGE_FLUSH: Duration = Duration::from_secs(10);
/// How often the time requests spent is charged to their apps' budgets.
const CHARGE_SPENT: Duration = Duration::from_secs(1);

/// A node, built, not yet running.
pub struct Node {
    state: AppState,
    listener: TcpListener,
    transport: Transport,
    limits: ConnectionLimits,
    janitor: Option<(Retention, Duration)>,
    callbacks: Option<Duration>,
    metrics: Option<TcpListener>,
}

impl Node {
    /// A node serving `state` on `listener` over plain HTTP, with the tasks every node needs
    /// (usage flushing, charging time spent). Add the others with the builder methods.
    pub fn new(state: AppState, listener: TcpListener) -> Self {
        Self {
            state,
            listener,
            transport: Transport::Plain,
            limits: ConnectionLimits::default(),
            janitor: None,
            callbacks: None,
            metrics: None,
        }
    }

    /// Serve over `transport` (plain TCP or TLS).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Header and request timeouts and the connection cap (defaults in [`ConnectionLimits`]).
    pub fn connection_limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Purge what `retention` says is past keeping, every `every`.
    pub fn janitor(mut self, retention: Retention, every: Duration) -> Self {
        self.janitor = Some((retention, every));
        self
    }

    /// Send due deauthorize and data-deletion callbacks, looking every `every`.
    pub fn callbacks(mut self, every: Duration) -> Self {
        self.callbacks = Some(every);
        self
    }

    /// Serve `/metrics`, unguarded, on its own listener too (`--metrics-listen`).
    pub fn metrics(mut self, listener: TcpListener) -> Self {
        self.metrics = Some(listener);
        self
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Runs until `shutdown` completes, then stops everything it started.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let state = self.state;

        let (usage, store) = (state.usage.clone(), state.ops.store.clone());
        tasks.spawn(every(USAGE_FLUSH, stop.clone(), move || {
            let (usage, store) = (usage.clone(), store.clone());
            async move { usage.flush(&*store).await }
        }));
        let limiter = state.limiter.clone();
        tasks.spawn(every(CHARGE_SPENT, stop.clone(), move || {
            let limiter = limiter.clone();
            async move { limiter.charge_spent().await }
        }));
        if let Some((retention, period)) = self.janitor {
            let (ops, stopping) = (state.ops.clone(), stop.clone());
            tasks.spawn(every(period, stop.clone(), move || {
                let (ops, mut stopping) = (ops.clone(), stopping.clone());
                // A paced pass over a large backlog lasts minutes: a stop ends it at once. The
                // batch under way is its own transaction, which the store finishes on its own.
                async move {
                    tokio::select! {
                        () = ops.janitor_pass(retention) => {}
                        _ = stopping.changed() => {}
                    }
                }
            }));
        }
        if let Some(period) = self.callbacks {
            let deliverer = Deliverer::new(state.ops.clone(), state.config.fetch_allow_private)
                .map_err(std::io::Error::other)?;
            tasks.spawn(every(period, stop.clone(), move || {
                let deliverer = deliverer.clone();
                async move { deliverer.deliver_pass().await }
            }));
        }
        if let Some(listener) = self.metrics {
            let mut stop = stop.clone();
            let app = crate::metrics_router(state.clone());
            tasks.spawn(async move {
                let until_stopped = async move {
                    let _ = stop.changed().await;
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(until_stopped)
                    .await
                {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            });
        }

        let served = transport::run(
            self.listener,
            self.transport,
            self.limits,
            crate::router(state.clone()),
            shutdown,
        )
        .await;
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        // What was counted since the last flush.
        state.usage.flush(&*state.ops.store).await;
        served
    }
}

/// Runs `pass` every `period` until `stop` changes (or its sender is gone); a pass under way
/// finishes first.
async fn every<F, Fut>(period: Duration, mut stop: watch::Receiver<bool>, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = tick.tick() => pass().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn every_runs_passes_until_stopped_and_finishes_the_one_under_way() {
        let (tx, rx) = watch::channel(false);
        let (started, finished) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let (s, f) = (started.clone(), finished.clone());
        let task = tokio::spawn(every(Duration::from_secs(10), rx, move || {
            let (s, f) = (s.clone(), f.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3)).await;
                f.fetch_add(1, Ordering::SeqCst);
            }
        }));
        // Passes at 0 s, 10 s and 20 s; the stop comes in the middle of the third.
        tokio::time::sleep(Duration::from_secs(21)).await;
        tx.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(started.load(Ordering::SeqCst), 3);
        assert_eq!(
            finished.load(Ordering::SeqCst),
            3,
            "the pass under way finished"
        );
    }
}
