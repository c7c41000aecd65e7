//! One module per endpoint group. Each handler parses, calls the domain and the store, renders.

pub mod admin;
pub mod authorize;
pub mod debug;
pub mod form;
pub mod lifecycle;
pub mod me;
pub mod rfc;
pub mod sandbox;
pub mod token;
