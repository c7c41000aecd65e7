//! Paging cursors and parameters: never a panic; a cursor that decodes encodes back to itself.
#![no_main]
use gramkey_domain::graph::paging::{PageParams, PageRequest, Position};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(p) = Position::from_cursor(raw) {
        assert_eq!(Position::from_cursor(&p.cursor()), Some(p));
    }
    let mut parts = raw.splitn(5, '\u{0}');
    let params = PageParams {
        limit: parts.next(),
        after: parts.next(),
        before: parts.next(),
        since: parts.next(),
        until: parts.next(),
    };
    if let Ok(req) = PageRequest::parse(params, 25) {
        assert!(req.limit >= 1 && req.fetch() == req.limit + 1);
        assert!(req.after.is_none() || req.before.is_none());
    }
});
