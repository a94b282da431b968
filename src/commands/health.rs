use std::process::ExitCode;

use mtls::admin;
use mtls::cli::HealthArgs;

pub fn run(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let Some(addr) = admin::parse_admin_listen(&args.admin_listen)
        .map_err(|err| anyhow::anyhow!("--admin-listen / ADMIN_LISTEN: {err}"))?
    else {
        anyhow::bail!(
            "the admin endpoint is off (ADMIN_LISTEN=off); `mtls health` probes it, so set --admin-listen to an address"
        );
    };
    match super::small_runtime()?.block_on(admin::probe(addr, args.timeout)) {
        Ok(body) => {
            println!("healthy: {body}");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!("unhealthy: {err}");
            Ok(super::failed())
        }
    }
}
