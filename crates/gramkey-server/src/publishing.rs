//! The publishing service (wire protocol §4, content publishing): containers, their
//! processing, publishing them as media, and the 24-hour cap. The rules are the domain's
//! (`graph::publish`); this applies them to stored containers, mints ids, starts the media
//! fetch and calls the store. The Graph handlers (`handlers/graph/publish.rs`) only read
//! parameters and render.

use gramkey_domain::error::GraphError;

use crate::wire::graph::GraphResponse;
use gramkey_domain::graph::media::MediaType;
use gramkey_domain::graph::publish::{
    self, ContainerKind, ContainerParams, ContainerSpec, ContainerStatus, QUOTA_DURATION,
};
use gramkey_domain::ids::{generate_container_id, generate_media_id};
use gramkey_domain::{AppId, ContainerId, MediaId, UnixTime, UserId};
use gramkey_store::{Container, Media, Publication, PublishOutcome};

use crate::state::AppState;

/// Who publishes: an app, for one of its users.
#[derive(Debug, Clone, Copy)]
pub struct Publisher<'a> {
    pub app: &'a AppId,
    pub user: UserId,
    /// The app's time (its test clock, in development mode).
    pub now: UnixTime,
}

/// The publishing service over a node's state: `state.publishing()`.
pub struct Publishing<'a> {
    state: &'a AppState,
}

impl AppState {
    pub fn publishing(&self) -> Publishing<'_> {
        Publishing { state: self }
    }
}

/// The media type a published container shows.
fn published_type(k: &Container) -> MediaType {
    match k.kind {
        ContainerKind::Carousel => MediaType::CarouselAlbum,
        kind if kind.is_video(k.source_is_video) => MediaType::Video,
        _ => MediaType::Image,
    }
}

impl Publishing<'_> {
    /// A container this app made for this user; any other id is "does not exist" (`method`
    /// names the operation, as Graph's message does).
    pub async fn own_container(
        &self,
        by: Publisher<'_>,
        id: &ContainerId,
        method: &str,
    ) -> Result<Container, GraphResponse> {
        match self.state.ops.store.container(id).await? {
            Some(k) if k.user_id == by.user && &k.app_id == by.app => Ok(k),
            _ => Err(GraphError::not_found(id.as_str(), method).into()),
        }
    }

    /// `POST /{user}/media`: a new container, `IN_PROGRESS` while its media is fetched (when
    /// the node fetches), else `FINISHED`. Returns its id.
    pub async fn create_container(
        &self,
        by: Publisher<'_>,
        params: ContainerParams<'_>,
    ) -> Result<ContainerId, GraphResponse> {
        let spec = ContainerSpec::parse(params)?;
        let now = by.now;
        for child in &spec.children {
            let k = self.own_container(by, child, "post").await?;
            publish::check_child(
                child,
                k.is_carousel_item,
                publish::status(k.status, k.created_at, now),
            )?;
        }
        // The media to fetch, when the server fetches (carousels have none).
        let fetch = self.state.fetcher.as_ref().zip(spec.source_url.clone());
        let container = Container {
            id: generate_container_id(&*self.state.ops.entropy),
            app_id: by.app.clone(),
            user_id: by.user,
            kind: spec.kind,
            source_url: spec.source_url.clone(),
            source_is_video: spec.source_is_video,
            caption: spec.caption,
            is_carousel_item: spec.is_carousel_item,
            children: spec.children,
            status: if fetch.is_some() {
                ContainerStatus::InProgress
            } else {
                ContainerStatus::Finished
            },
            status_reason: None,
            created_at: now,
            published_at: None,
            media_id: None,
        };
        self.state.ops.store.create_container(&container).await?;
        if let Some((fetcher, url)) = fetch {
            fetcher.process(
                container.id.clone(),
                url,
                container.kind.is_video(container.source_is_video),
            );
        }
        tracing::info!(container_id = %container.id, kind = container.kind.as_str(), "container created");
        Ok(container.id)
    }

    /// `POST /{user}/media_publish?creation_id=…`: publishes a finished container (an album
    /// with its children) as media, within the 24-hour cap. Returns the media id.
    pub async fn publish(
        &self,
        by: Publisher<'_>,
        creation_id: &str,
    ) -> Result<MediaId, GraphResponse> {
        let id = ContainerId::parse(creation_id).ok_or_else(|| {
            GraphError::invalid_parameter(format!("Invalid container id {creation_id:?}"))
        })?;
        let k = self.own_container(by, &id, "post").await?;
        let now = by.now;
        publish::check_publishable(
            publish::status(k.status, k.created_at, now),
            k.is_carousel_item,
        )?;
        let since = now - QUOTA_DURATION;
        let quota = self.state.config.publish_quota;
        publish::check_quota(self.published_since(by.user, since).await?, quota)?;
        let entropy = &*self.state.ops.entropy;
        let public = &self.state.config.public_url;
        let new_media = |source: &Container, parent: Option<&MediaId>, position: i64| {
            let id = generate_media_id(entropy, now);
            let media_type = published_type(source);
            let is_video = media_type == MediaType::Video;
            Media {
                media_type,
                caption: source.caption.clone(),
                media_url: source.source_url.clone().unwrap_or_default(),
                permalink: format!("{public}/p/{id}"),
                thumbnail_url: is_video.then(|| format!("{public}/sandbox/media/{id}.svg")),
                user_id: by.user,
                created_at: now,
                like_count: 0,
                comments_count: 0,
                parent_id: parent.cloned(),
                position,
                id,
            }
        };
        let mut media = vec![new_media(&k, None, 0)];
        let album_id = media[0].id.clone();
        for (i, child) in k.children.iter().enumerate() {
            let c = self.own_container(by, child, "post").await?;
            publish::check_child(
                child,
                c.is_carousel_item,
                publish::status(c.status, c.created_at, now),
            )?;
            media.push(new_media(&c, Some(&album_id), i as i64));
        }
        if let Some(first_child) = media.get(1).map(|m| m.media_url.clone()) {
            media[0].media_url = first_child;
        }
        let notifications = crate::webhooks::mention_notifications(
            &*self.state.ops.store,
            now,
            &k.caption,
            &album_id,
            None,
            by.user,
        )
        .await?;
        let outcome = self
            .state
            .ops
            .store
            .publish(&Publication {
                container_id: k.id.clone(),
                user_id: by.user,
                media,
                now,
                quota_since: since,
                quota_total: quota,
                notifications,
            })
            .await?;
        match outcome {
            PublishOutcome::Published => {
                tracing::info!(container_id = %k.id, media_id = %album_id, "published");
                Ok(album_id)
            }
            PublishOutcome::OverQuota => Err(GraphError::publish_limit().into()),
            PublishOutcome::NotPublishable => Err(GraphError::invalid_parameter(
                "This container has already been published",
            )
            .into()),
        }
    }

    /// How many posts `user` published since `since` (what the cap counts).
    pub async fn published_since(&self, user: UserId, since: i64) -> Result<u64, GraphResponse> {
        self.state
            .ops
            .store
            .publish_count(user, since)
            .await
            .map_err(GraphResponse::from)
    }

    /// Posts in the cap's current window.
    pub async fn quota_usage(&self, by: Publisher<'_>) -> Result<u64, GraphResponse> {
        self.published_since(by.user, by.now - QUOTA_DURATION).await
    }
}
