//! The resource API's rules (wire protocol §4, §5): `fields` expressions, what each field and
//! edge needs, cursor paging, publishing, comments, and the legacy v1 envelope.

pub mod access;
pub mod comment;
pub mod fields;
pub mod insights;
pub mod legacy;
pub mod media;
pub mod metrics;
pub mod paging;
pub mod publish;
