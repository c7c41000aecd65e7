//! Processing publishing containers: the server fetches the image or video a container names
//! and checks it is what the container says, then marks the container `FINISHED` or `ERROR`
//! with the reason. The bytes are not kept: published media point at the original URL.
//!
//! It runs as a task per container. If the server stops meanwhile, the container stays
//! `IN_PROGRESS` until it expires (24 h), and the app makes a new one, as it would on Instagram.

use std::sync::Arc;
use std::time::Duration;

use gramkey_domain::graph::publish::check_content_type;
use gramkey_store::Store;

/// Images up to 8 MiB (Instagram's limit); videos are checked by their first 100 MiB.
const IMAGE_MAX: u64 = 8 * 1024 * 1024;
const VIDEO_MAX: u64 = 100 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    store: Arc<dyn Store>,
}

impl Fetcher {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!(
                "gramkey/",
                env!("CARGO_PKG_VERSION"),
                " (media fetch)"
            ))
            .build()
            .unwrap_or_default();
        Self { client, store }
    }

    /// Fetches and checks in the background, then records the outcome.
    pub fn process(&self, container_id: String, url: String, is_video: bool) {
        let this = self.clone();
        tokio::spawn(async move {
            let outcome = this.check(&url, is_video).await;
            if let Err(reason) = &outcome {
                tracing::info!(container_id = %container_id, %reason, "container media refused");
            }
            if let Err(e) = this.store.finish_container(&container_id, outcome).await {
                tracing::error!(container_id = %container_id, error = %e, "recording a container's processing failed");
            }
        });
    }

    async fn check(&self, url: &str, is_video: bool) -> Result<(), String> {
        let mut resp = self.client.get(url).send().await.map_err(|e| {
            format!(
                "The media could not be fetched from this URL: {}",
                without_url(&e)
            )
        })?;
        if !resp.status().is_success() {
            return Err(format!(
                "The media URL answered HTTP {}",
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
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("Reading the media failed: {}", without_url(&e)))?
        {
            read += chunk.len() as u64;
            if read > max {
                return Err(format!(
                    "The media is larger than {} MiB",
                    max / 1024 / 1024
                ));
            }
        }
        if read == 0 {
            return Err("The media at this URL is empty".into());
        }
        Ok(())
    }
}

/// reqwest errors name the URL, which may carry a signed query; the reason is enough.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    s
}
