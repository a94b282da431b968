use std::io::Write;
use std::process::ExitCode;

use mtls::cli::ClientArgs;
use mtls::client::{self, ClientRequest, Identity};

pub fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let identity = match (args.cert, args.key, args.p12) {
        (Some(cert), Some(key), _) => Some(Identity::Files { cert, key }),
        (_, _, Some(path)) => {
            let password = p12_password(&path, args.password_env)?;
            Some(Identity::Pkcs12 { path, password })
        }
        _ => None,
    };
    let request = ClientRequest {
        url: args.url,
        cacert: args.cacert,
        identity,
        method: args.method,
        data: args.data,
        headers: args.headers,
        insecure: args.insecure,
        servername: args.servername,
        resolve: args.resolve,
        timeout: args.timeout,
    };
    let verbose = args.verbose;
    let mut trace = |line: &str| {
        if verbose {
            eprintln!("{line}");
        }
    };
    match super::small_runtime()?.block_on(client::send(&request, &mut trace)) {
        Ok(response) => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&response.body)?;
            stdout.flush()?;
            if response.succeeded() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("error: the server answered HTTP {}", response.status);
                Ok(super::failed())
            }
        }
        Err(err) if err.is_usage() => Err(err.into()),
        Err(err) => {
            eprintln!("error: {err}");
            Ok(super::failed())
        }
    }
}

/// The --p12 password: from the variable named by --password-env, else
/// asked for on the terminal. Never taken from the command line.
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
