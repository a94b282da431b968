//! One file per subcommand: read the arguments, call the library, print.

pub mod check;
pub mod client;
pub mod health;
pub mod inspect;
pub mod pki;
pub mod serve;
pub mod verify;

use std::process::ExitCode;

/// Exit code when the checked thing failed (verify, health).
pub const EXIT_FAILED: u8 = 1;

/// A PKCS#12 password source: the named environment variable, else a
/// prompt on the terminal, else none.
pub fn password_source(env_var: Option<String>) -> impl Fn() -> Option<String> {
    move || match &env_var {
        Some(name) => std::env::var(name).ok(),
        None => rpassword::prompt_password("PKCS#12 password: ").ok(),
    }
}

pub fn failed() -> ExitCode {
    ExitCode::from(EXIT_FAILED)
}

/// A current-thread runtime for commands that make one connection.
pub fn small_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
