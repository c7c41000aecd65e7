//! What kind of media a post is (wire protocol §4, `media_type`).

/// A media's type, as Graph names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Image,
    Video,
    CarouselAlbum,
}

impl MediaType {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Image => "IMAGE",
            MediaType::Video => "VIDEO",
            MediaType::CarouselAlbum => "CAROUSEL_ALBUM",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "IMAGE" => Some(MediaType::Image),
            "VIDEO" => Some(MediaType::Video),
            "CAROUSEL_ALBUM" => Some(MediaType::CarouselAlbum),
            _ => None,
        }
    }

    /// Legacy v1's `type`: `image`, `video` or `carousel`.
    pub fn legacy_name(self) -> &'static str {
        match self {
            MediaType::Image => "image",
            MediaType::Video => "video",
            MediaType::CarouselAlbum => "carousel",
        }
    }
}

impl std::fmt::Display for MediaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in [MediaType::Image, MediaType::Video, MediaType::CarouselAlbum] {
            assert_eq!(MediaType::parse(t.as_str()), Some(t));
        }
        assert_eq!(
            MediaType::parse("CAROUSEL"),
            None,
            "a container type, not a media's"
        );
        assert_eq!(MediaType::CarouselAlbum.legacy_name(), "carousel");
    }
}
