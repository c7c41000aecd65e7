//! Webhooks (docs/webhooks.md): verifying an app's endpoint, the notifications that what
//! happens on an account causes, test deliveries, and sending what is queued.
//!
//! Notifications are queued in the transaction of what causes them (a comment, a publication:
//! `NewComment::notifications`, `Publication::notifications`) and sent by the node's
//! [`Deliverer`] from the outbox, as callbacks are: leased to one node at a time, at least
//! once, retried with backoff, and kept across restarts.

use std::time::Duration;

use gramkey_domain::callback::CallbackState;
use gramkey_domain::error::GraphError;
use gramkey_domain::ids::generate_comment_id;
use gramkey_domain::webhook::{
    CommentEvent, Field, OBJECT, judge_answer, judge_verification, mention_value, mentions,
    new_challenge, notification, outsider_id, signature, test_notification, verification_failed,
    verification_query,
};
use gramkey_domain::{AppMode, CommentId, Entropy, MediaId, UnixTime, UserId};
use gramkey_store::{
    Attempt, NewComment, NewWebhook, Store, StoreError, User, Webhook, WebhookTarget,
};

use crate::callbacks::{Deliverer, LEASE_SECS, read_limited};
use crate::ops::{OpError, Ops};
use crate::outbound::{Outbound, Purpose, describe};

/// The verification request: Meta gives an endpoint a few seconds.
const VERIFY: Purpose = Purpose {
    name: "webhook verification",
    timeout: Duration::from_secs(10),
    redirects: 0,
};
/// The most notifications one pass claims.
const BATCH: u32 = 64;

/// Sends `GET callback_url?hub.mode=subscribe&hub.challenge=…&hub.verify_token=…` through the
/// outbound guard and requires the challenge echoed; otherwise Graph's error 2200.
pub async fn verify_endpoint(
    allow_private: bool,
    entropy: &dyn Entropy,
    callback_url: &str,
    verify_token: &str,
) -> Result<(), GraphError> {
    let http = Outbound::new(allow_private, VERIFY).map_err(|e| {
        tracing::error!(error = %e, "the webhook verification client could not be built");
        GraphError::internal()
    })?;
    let challenge = new_challenge(entropy);
    let mut url = url::Url::parse(callback_url)
        .map_err(|e| verification_failed(&format!("not a URL: {e}")))?;
    url.query_pairs_mut()
        .extend_pairs(verification_query(&challenge, verify_token));
    let request = http
        .get(url.as_str())
        .map_err(|e| verification_failed(&e.to_string()))?;
    match request.send().await {
        Ok(resp) => {
            let status = resp.status();
            let reason = status.canonical_reason().unwrap_or("");
            let body = read_limited(resp).await;
            judge_verification(status.as_u16(), &body, &challenge, reason)
        }
        Err(e) => Err(verification_failed(&describe(e))),
    }
}

/// The notifications a new comment causes: `comments` to the apps that hear of the media's
/// owner, and `mentions` to those that hear of each account the text @mentions (not the
/// commenter themself).
async fn comment_notifications(
    store: &dyn Store,
    now: UnixTime,
    media: (&MediaId, UserId),
    comment: (&str, &str, Option<&str>),
    commenter: &User,
) -> Result<Vec<NewWebhook>, StoreError> {
    let ((media_id, owner), (comment_id, text, parent_id)) = (media, comment);
    let mut notes = Vec::new();
    for target in hearing(store, owner, Field::Comments).await? {
        let from_id = match store.grant(&target.app_id, commenter.id).await? {
            Some(g) => g.scoped_id,
            None => outsider_id(&target.app_id, commenter.id),
        };
        let value = CommentEvent {
            comment_id,
            text,
            from_id: &from_id,
            from_username: &commenter.username,
            media_id: media_id.as_str(),
            // Every sandbox post is a feed post.
            media_product_type: "FEED",
            parent_id,
        }
        .value();
        notes.push(note(&target, Field::Comments, &value, now));
    }
    notes.extend(
        mention_notifications(store, now, text, media_id, Some(comment_id), commenter.id).await?,
    );
    Ok(notes)
}

/// `mentions` for each account `text` @mentions, but `author`.
pub async fn mention_notifications(
    store: &dyn Store,
    now: UnixTime,
    text: &str,
    media_id: &MediaId,
    comment_id: Option<&str>,
    author: UserId,
) -> Result<Vec<NewWebhook>, StoreError> {
    let mut notes = Vec::new();
    for name in mentions(text) {
        let Some(mentioned) = store.user_by_name(&name).await? else {
            continue;
        };
        if mentioned.id == author {
            continue;
        }
        let value = mention_value(media_id.as_str(), comment_id);
        for target in hearing(store, mentioned.id, Field::Mentions).await? {
            notes.push(note(&target, Field::Mentions, &value, now));
        }
    }
    Ok(notes)
}

/// The apps that hear of `field` on `user`'s account: live, subscribed to the field, subscribed
/// by the account, which granted the field's permission.
async fn hearing(
    store: &dyn Store,
    user: UserId,
    field: Field,
) -> Result<Vec<WebhookTarget>, StoreError> {
    Ok(store
        .webhook_targets(user)
        .await?
        .into_iter()
        .filter(|t| t.fields.contains(field) && t.scopes.contains(field.scope()))
        .collect())
}

fn note(
    target: &WebhookTarget,
    field: Field,
    value: &serde_json::Value,
    now: UnixTime,
) -> NewWebhook {
    NewWebhook {
        app_id: target.app_id.clone(),
        field,
        body: notification(&target.account, now, field, value),
        test: false,
        created_at: now,
    }
}

/// What the dashboard and `gramkey webhooks` say about an app's mode.
pub fn mode_note(mode: AppMode) -> &'static str {
    match mode {
        AppMode::Live => "Live: accounts that subscribed the app send it notifications.",
        AppMode::Development => {
            "Development mode: the app receives test deliveries only. As on Instagram, an app \
             must be live to receive notifications for its users."
        }
    }
}

impl Ops {
    /// Adds `author`'s comment (a reply to `parent`) to `media` (its id and owner), with the
    /// notifications it causes, in one transaction. `None` when the media or the parent is
    /// gone.
    pub async fn add_comment(
        &self,
        author: &User,
        media: (&MediaId, UserId),
        parent: Option<&CommentId>,
        text: String,
    ) -> Result<Option<CommentId>, StoreError> {
        let id = generate_comment_id(&*self.entropy);
        let now = self.clock.now();
        let notifications = comment_notifications(
            &*self.store,
            now,
            media,
            (id.as_str(), &text, parent.map(CommentId::as_str)),
            author,
        )
        .await?;
        let added = self
            .store
            .add_comment(&NewComment {
                id: id.clone(),
                media_id: media.0.clone(),
                user_id: author.id,
                parent_id: parent.cloned(),
                text,
                created_at: now,
                notifications,
            })
            .await?;
        Ok(added.then_some(id))
    }

    /// Queues a test delivery of `field`'s sample to the app's subscribed URL, whatever its
    /// mode, as the "Test" button of Meta's dashboard sends.
    pub async fn send_test_webhook(&self, app_id: &str, field: &str) -> Result<(), OpError> {
        let app = &self.app(app_id).await?.id;
        let field = Field::parse(field).ok_or_else(|| {
            OpError::Invalid(format!(
                "unknown webhook field {field:?}; fields: {}",
                Field::ALL.map(Field::as_str).join(", ")
            ))
        })?;
        if self.store.app_subscription(app, OBJECT).await?.is_none() {
            return Err(OpError::Invalid(
                "the app has no webhook subscription: subscribe a callback URL first \
                 (POST /{app-id}/subscriptions with the app token)"
                    .into(),
            ));
        }
        let now = self.clock.now();
        self.store
            .enqueue_webhooks(&[NewWebhook {
                app_id: app.clone(),
                field,
                body: test_notification(field, now),
                test: true,
                created_at: now,
            }])
            .await?;
        Ok(())
    }

    /// The newest `limit` webhook deliveries, of one app or all.
    pub async fn webhook_deliveries(
        &self,
        app: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Webhook>, OpError> {
        let app = self.app_filter(app).await?;
        Ok(self.store.webhooks(app.as_ref(), limit).await?)
    }

    /// Requeues a failed delivery.
    pub async fn retry_webhook(&self, id: i64) -> Result<(), OpError> {
        if self.store.retry_webhook(id, self.clock.now()).await? {
            Ok(())
        } else {
            Err(OpError::NotFound(format!(
                "no failed webhook delivery with id {id}"
            )))
        }
    }
}

/// A delivery as JSON, for the admin API and the CLI: never the app secret or signature.
pub fn delivery_json(w: &Webhook) -> serde_json::Value {
    serde_json::json!({
        "id": w.id,
        "app_id": w.app_id.as_str(),
        "field": w.field,
        "test": w.test,
        "created_at": w.created_at,
        "state": w.state.as_str(),
        "attempts": w.attempts,
        "next_attempt_at": (w.state == CallbackState::Pending).then_some(w.next_attempt_at),
        "url": w.url,
        "status": w.status,
        "error": w.last_error,
        "finished_at": w.finished_at,
        "body": serde_json::from_str::<serde_json::Value>(&w.body).unwrap_or(serde_json::Value::Null),
    })
}

impl Deliverer {
    /// Claims the notifications that are due and sends them, concurrently.
    pub(crate) async fn deliver_webhooks(&self) -> Result<usize, StoreError> {
        let now = self.ops.clock.now();
        let due = self
            .ops
            .store
            .claim_webhooks(now, now + LEASE_SECS, BATCH)
            .await?;
        Ok(self
            .send_all(due, "webhook", |this, w| async move {
                this.deliver_webhook(w).await
            })
            .await)
    }

    async fn deliver_webhook(&self, w: Webhook) -> Result<(), StoreError> {
        let (attempt, status) = self.send_webhook(&w).await;
        match &attempt {
            Attempt::Delivered { .. } => tracing::info!(
                webhook = w.id, app_id = %w.app_id, field = %w.field, "webhook delivered"
            ),
            Attempt::Retry { error, next_at, .. } => tracing::warn!(
                webhook = w.id, app_id = %w.app_id, field = %w.field, attempt = w.attempts,
                next_at, error = %error, "webhook attempt failed; will retry"
            ),
            Attempt::GaveUp { error, .. } => tracing::warn!(
                webhook = w.id, app_id = %w.app_id, field = %w.field, attempt = w.attempts,
                error = %error, "webhook failed for good"
            ),
        }
        if !self
            .ops
            .store
            .finish_webhook(w.id, w.attempts, &attempt, status)
            .await?
        {
            tracing::warn!(
                webhook = w.id,
                attempt = w.attempts,
                "webhook attempt outlived its lease; the newer attempt's outcome stands"
            );
        }
        Ok(())
    }

    /// Sends one notification; how it ended, and the answer's status if there was one.
    async fn send_webhook(&self, w: &Webhook) -> (Attempt, Option<u16>) {
        let now = self.ops.clock.now();
        let give_up = |error: &str| Attempt::GaveUp {
            at: now,
            url: None,
            error: error.to_owned(),
        };
        let app = match self.ops.store.app(&w.app_id).await {
            Ok(Some(app)) => app,
            Ok(None) => return (give_up("the app was deleted"), None),
            Err(e) => {
                return (
                    self.failed(w.attempts, None, format!("could not read the app: {e}")),
                    None,
                );
            }
        };
        let url = match self.ops.store.app_subscription(&w.app_id, OBJECT).await {
            Ok(Some(sub)) => sub.callback_url,
            Ok(None) => {
                return (
                    give_up("the app no longer has a webhook subscription"),
                    None,
                );
            }
            Err(e) => {
                let error = format!("could not read the subscription: {e}");
                return (self.failed(w.attempts, None, error), None);
            }
        };
        let Some(secret) = self.ops.app_secret(&app) else {
            let error = "this app's secret cannot sign notifications: it predates signed \
                         callbacks, or the server key changed; rotate the secret (gramkey app \
                         rotate-secret), then retry (gramkey webhooks retry)";
            return (give_up(error), None);
        };
        let request = match self.http.post(&url) {
            Ok(request) => request,
            Err(e) => return (self.failed(w.attempts, Some(url), e.to_string()), None),
        };
        let sent = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                "X-Hub-Signature-256",
                signature(secret.expose(), w.body.as_bytes()),
            )
            .body(w.body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                // Read (a bounded part of) the answer, so the connection can be reused.
                let _ = read_limited(resp).await;
                let attempt = match judge_answer(status) {
                    Ok(_) => Attempt::Delivered {
                        at: self.ops.clock.now(),
                        url,
                        confirmation: Default::default(),
                    },
                    Err(error) => self.failed(w.attempts, Some(url), error),
                };
                (attempt, Some(status))
            }
            Err(e) => (self.failed(w.attempts, Some(url), describe(e)), None),
        }
    }
}
