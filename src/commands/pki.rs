use std::process::ExitCode;

use mtls::cli::PkiInitArgs;
use mtls::pki;

pub fn init(args: PkiInitArgs) -> anyhow::Result<ExitCode> {
    let options = pki::InitOptions {
        dir: args.dir,
        domain: args.domain,
        clients: args.clients,
        force: args.force,
    };
    let written = pki::init(&options)?;
    for file in &written {
        if file.private {
            println!("wrote {} (private key, mode 0600)", file.path.display());
        } else {
            println!("wrote {}", file.path.display());
        }
    }
    println!(
        "development PKI ready: CA `{}`, server certificate for {}",
        pki::CA_COMMON_NAME,
        options.domain
    );
    Ok(ExitCode::SUCCESS)
}
