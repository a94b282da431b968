//! mtls: an HTTPS server that authenticates clients by certificate, and the
//! tools around it. The binary, the tests and the benchmarks share this library.

// Memory safety is left to the compiler and to audited dependencies.
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod cert;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod drain;
pub mod h2_send_timeout;
pub mod hsts;
pub mod http;
pub mod identity;
pub mod input;
pub mod inspect;
pub mod log_format;
pub mod logging;
pub mod metrics;
pub mod parking;
pub mod pki;
pub mod policy;
pub mod proxy;
pub mod proxy_protocol;
pub mod rejection;
pub mod reload;
pub mod secrets;
pub mod server;
pub mod strict;
pub mod tls;
pub mod verify;
