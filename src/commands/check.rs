use std::process::ExitCode;

use mtls::check::{self, CheckRequest};
use mtls::cli::CheckArgs;
use mtls::client::Identity;

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let identity = match (args.cert, args.key, args.p12) {
        (Some(cert), Some(key), _) => Some(Identity::Files { cert, key }),
        (_, _, Some(path)) => {
            let password = p12_password(&path, args.password_env)?;
            Some(Identity::Pkcs12 { path, password })
        }
        _ => None,
    };
    let request = CheckRequest {
        url: args.url,
        cacert: args.cacert,
        identity,
        servername: args.servername,
        resolve: args.resolve,
        timeout: args.timeout,
    };
    let report = super::small_runtime()?.block_on(check::run(&request))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", check::render_text(&report));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        super::failed()
    })
}

/// The --p12 password: from the variable named by --password-env, else
/// asked for on the terminal.
fn p12_password(path: &std::path::Path, env_var: Option<String>) -> anyhow::Result<String> {
    if let Some(name) = &env_var
        && std::env::var_os(name).is_none()
    {
        anyhow::bail!("--password-env {name}: the environment variable {name} is not set");
    }
    super::password_source(env_var)().ok_or_else(|| {
        anyhow::anyhow!(
            "`{}` (--p12) needs a password; pass --password-env VAR with the password in VAR",
            path.display()
        )
    })
}
