//! Delivers queued deauthorize and data-deletion callbacks (the outbox in
//! [`gramkey_store::CallbackStore`]).
//!
//! Every node runs a [`Deliverer`]. Each pass claims the callbacks that are due, leasing them
//! for [`LEASE_SECS`] so no other node sends them meanwhile, POSTs each one's
//! `signed_request`, and records the outcome: delivered, retried later with backoff, or failed
//! after [`gramkey_domain::callback::MAX_ATTEMPTS`]. A node that dies mid-delivery leaves its
//! lease to run out, and the callback is sent again: delivery is at least once, so apps should
//! treat a repeated callback for the same user as one.

use std::time::Duration;

use gramkey_domain::callback::{CallbackKind, judge_answer, next_attempt, signed_request};
use gramkey_store::{Attempt, Callback};

use crate::ops::Ops;
use crate::outbound::{Outbound, Purpose, describe};

/// How long a claimed callback is reserved for its claimer: well over the request timeout.
pub const LEASE_SECS: i64 = 60;
/// The most callbacks one pass claims.
const BATCH: u32 = 32;
/// The whole request, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an app's answer that is read.
const MAX_ANSWER: usize = 64 * 1024;

/// Sends callbacks for one node.
#[derive(Clone)]
pub struct Deliverer {
    pub(crate) ops: Ops,
    pub(crate) http: Outbound,
}

impl Deliverer {
    /// `allow_private`: as `--fetch-allow-private`, whether callbacks may go to loopback and
    /// private addresses.
    pub fn new(ops: Ops, allow_private: bool) -> Result<Self, reqwest::Error> {
        let http = Outbound::new(
            allow_private,
            Purpose {
                name: "callbacks",
                timeout: TIMEOUT,
                // A callback goes to the configured URL and nowhere else.
                redirects: 0,
            },
        )?;
        Ok(Self { ops, http })
    }

    /// [`Deliverer::deliver_due`] as the node runs it: a failure is logged and left for the
    /// next pass.
    pub async fn deliver_pass(&self) {
        if let Err(e) = self.deliver_due().await {
            tracing::warn!(error = %e, "callback delivery pass failed");
        }
    }

    /// One pass: claims the callbacks and webhook notifications that are due and sends them,
    /// concurrently. Returns how many were attempted.
    pub async fn deliver_due(&self) -> Result<usize, gramkey_store::StoreError> {
        Ok(self.deliver_callbacks().await? + self.deliver_webhooks().await?)
    }

    async fn deliver_callbacks(&self) -> Result<usize, gramkey_store::StoreError> {
        let now = self.ops.clock.now();
        let due = self
            .ops
            .store
            .claim_callbacks(now, now + LEASE_SECS, BATCH)
            .await?;
        Ok(self
            .send_all(
                due,
                "callback",
                |this, cb| async move { this.deliver(cb).await },
            )
            .await)
    }

    /// Sends each of `items` with `send`, concurrently; how many there were. A failure to
    /// record an outcome is logged: the lease runs out and the item is sent again.
    pub(crate) async fn send_all<T, F, Fut>(&self, items: Vec<T>, what: &str, send: F) -> usize
    where
        T: Send + 'static,
        F: Fn(Self, T) -> Fut,
        Fut: Future<Output = Result<(), gramkey_store::StoreError>> + Send + 'static,
    {
        let n = items.len();
        let mut sends = tokio::task::JoinSet::new();
        for item in items {
            sends.spawn(send(self.clone(), item));
        }
        while let Some(done) = sends.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "recording a {what} attempt failed");
            }
        }
        n
    }

    async fn deliver(&self, cb: Callback) -> Result<(), gramkey_store::StoreError> {
        let attempt = match self.attempt(&cb).await {
            Ok(attempt) => attempt,
            // Nothing was sent, and nothing will be until someone changes the app.
            Err(Unsendable::Permanent(error)) => Attempt::GaveUp {
                at: self.ops.clock.now(),
                url: None,
                error,
            },
            Err(Unsendable::Transient(error)) => self.failed(cb.attempts, None, error),
        };
        match &attempt {
            Attempt::Delivered { .. } => tracing::info!(
                callback = cb.id, app_id = %cb.app_id, kind = cb.kind.as_str(), "callback delivered"
            ),
            Attempt::Retry { error, next_at, .. } => tracing::warn!(
                callback = cb.id, app_id = %cb.app_id, kind = cb.kind.as_str(), attempt = cb.attempts,
                next_at, error = %error, "callback attempt failed; will retry"
            ),
            Attempt::GaveUp { error, .. } => tracing::warn!(
                callback = cb.id, app_id = %cb.app_id, kind = cb.kind.as_str(), attempt = cb.attempts,
                error = %error, "callback failed for good"
            ),
        }
        if !self
            .ops
            .store
            .finish_attempt(cb.id, cb.attempts, &attempt)
            .await?
        {
            tracing::warn!(
                callback = cb.id,
                attempt = cb.attempts,
                "callback attempt outlived its lease; the newer attempt's outcome stands"
            );
        }
        Ok(())
    }

    /// A failed attempt (the `attempts`-th): retried later, or given up after the last one.
    pub(crate) fn failed(&self, attempts: u32, url: Option<String>, error: String) -> Attempt {
        let now = self.ops.clock.now();
        match next_attempt(attempts, now, &*self.ops.entropy) {
            Some(next_at) => Attempt::Retry {
                url,
                error,
                next_at,
            },
            None => Attempt::GaveUp {
                at: now,
                url,
                error,
            },
        }
    }

    /// Sends one callback. `Err` when it cannot be sent at all.
    async fn attempt(&self, cb: &Callback) -> Result<Attempt, Unsendable> {
        let app = self
            .ops
            .store
            .app(&cb.app_id)
            .await
            .map_err(|e| Unsendable::Transient(format!("could not read the app: {e}")))?
            .ok_or(Unsendable::Permanent("the app was deleted".into()))?;
        let url = match cb.kind {
            CallbackKind::Deauthorize => app.deauthorize_url.as_ref(),
            CallbackKind::DataDeletion => app.data_deletion_url.as_ref(),
        }
        .ok_or_else(|| {
            Unsendable::Permanent(format!("the app no longer has a {} URL", cb.kind.as_str()))
        })?
        .clone();
        let secret = self.ops.app_secret(&app).ok_or(Unsendable::Permanent(
            "this app's secret cannot sign callbacks: it predates signed callbacks, or the \
             server key changed; rotate the secret (gramkey app rotate-secret), then retry \
             (gramkey callbacks retry)"
                .into(),
        ))?;
        let now = self.ops.clock.now();
        let body = signed_request(&secret, &cb.scoped_id, now);
        let request = match self.http.post(&url) {
            Ok(request) => request,
            Err(e) => return Ok(self.failed(cb.attempts, Some(url), e.to_string())),
        };
        let outcome = match request
            .form(&[("signed_request", body.as_str())])
            .send()
            .await
        {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let answer = read_limited(resp).await;
                judge_answer(cb.kind, status, &answer)
            }
            Err(e) => Err(describe(e)),
        };
        Ok(match outcome {
            Ok(confirmation) => Attempt::Delivered {
                at: self.ops.clock.now(),
                url,
                confirmation,
            },
            Err(error) => self.failed(cb.attempts, Some(url), error),
        })
    }
}

/// Why a callback could not be sent at all.
pub(crate) enum Unsendable {
    /// The app's settings rule it out; retrying cannot help until they change.
    Permanent(String),
    /// The database failed; retry on the usual schedule.
    Transient(String),
}

/// The start of an answer's body, as text.
pub(crate) async fn read_limited(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ANSWER {
            body.truncate(MAX_ANSWER);
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}
