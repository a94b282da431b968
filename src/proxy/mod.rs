//! Reverse-proxy support: what the server tells the application behind it.

pub mod forward;
pub mod forwarded_cert;
pub mod identity_headers;
pub mod signed_identity;
