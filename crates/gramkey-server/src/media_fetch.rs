//! Processing publishing containers: the server fetches the image or video a container names
//! and checks it is what the container says, then marks the container `FINISHED` or `ERROR`.
//! The bytes are not kept: published media point at the original URL.
//!
//! Fetches go through the outbound guard ([`crate::outbound`]). Whatever fails, the container
//! says only [`FETCH_FAILED`]; the detail is logged.
//!
//! It runs as a task per container. If the server stops meanwhile, the container stays
//! `IN_PROGRESS` until it expires (24 h), and the app makes a new one, as it would on Instagram.

use gramkey_domain::ContainerId;
use std::sync::Arc;
use std::time::Duration;

use gramkey_domain::graph::publish::{FETCH_FAILED, check_content_type};
use gramkey_store::Store;

use crate::outbound::{Outbound, Purpose, describe};

/// Images up to 8 MiB (Instagram's limit); videos are checked by their first 100 MiB.
const IMAGE_MAX: u64 = 8 * 1024 * 1024;
const VIDEO_MAX: u64 = 100 * 1024 * 1024;

pub const PURPOSE: Purpose = Purpose {
    name: "media fetch",
    timeout: Duration::from_secs(30),
    redirects: 5,
};

#[derive(Clone)]
pub struct Fetcher {
    http: Outbound,
    store: Arc<dyn Store>,
}

impl Fetcher {
    pub fn new(store: Arc<dyn Store>, http: Outbound) -> Self {
        Self { http, store }
    }

    /// Fetches and checks in the background, then records the outcome.
    pub fn process(&self, container_id: ContainerId, url: String, is_video: bool) {
        let this = self.clone();
        tokio::spawn(async move {
            let outcome = this.check(&url, is_video).await.map_err(|reason| {
                tracing::info!(container_id = %container_id, %reason, "container media refused");
                FETCH_FAILED.to_owned()
            });
            if let Err(e) = this.store.finish_container(&container_id, outcome).await {
                tracing::error!(container_id = %container_id, error = %e, "recording a container's processing failed");
            }
        });
    }

    /// `Err` says why, for the log.
    async fn check(&self, url: &str, is_video: bool) -> Result<(), String> {
        let request = self.http.get(url).map_err(|e| e.to_string())?;
        let mut resp = request.send().await.map_err(describe)?;
        if !resp.status().is_success() {
            return Err(format!(
                "the media URL answered HTTP {}",
                resp.status().as_u16()
            ));
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        check_content_type(is_video, content_type.as_deref())?;
        let max = if is_video { VIDEO_MAX } else { IMAGE_MAX };
        let mut read: u64 = 0;
        while let Some(chunk) = resp.chunk().await.map_err(describe)? {
            read += chunk.len() as u64;
            if read > max {
                return Err(format!(
                    "the media is larger than {} MiB",
                    max / 1024 / 1024
                ));
            }
        }
        if read == 0 {
            return Err("the media at this URL is empty".into());
        }
        Ok(())
    }
}
