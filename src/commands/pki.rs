use std::process::ExitCode;

use mtls::cli::{PkiClientArgs, PkiDirArgs, PkiInitArgs, PkiRevokeArgs};
use mtls::pki;

pub fn init(args: PkiInitArgs) -> anyhow::Result<ExitCode> {
    let options = pki::InitOptions {
        dir: args.dir,
        domain: args.domain,
        clients: args.clients,
        force: args.force,
    };
    print_written(&pki::init(&options)?);
    println!(
        "development PKI ready: CA `{}`, server certificate for {}",
        pki::CA_COMMON_NAME,
        options.domain
    );
    Ok(ExitCode::SUCCESS)
}

pub fn client(args: PkiClientArgs) -> anyhow::Result<ExitCode> {
    print_written(&pki::add_client(&args.dir.dir, &args.name, args.force)?);
    Ok(ExitCode::SUCCESS)
}

pub fn revoke(args: PkiRevokeArgs) -> anyhow::Result<ExitCode> {
    let written = pki::revoke(&args.dir.dir, &args.name)?;
    println!("revoked {}", args.name);
    print_crl(&written);
    Ok(ExitCode::SUCCESS)
}

pub fn crl(args: PkiDirArgs) -> anyhow::Result<ExitCode> {
    print_crl(&pki::refresh_crl(&args.dir)?);
    Ok(ExitCode::SUCCESS)
}

fn print_written(written: &[pki::WrittenFile]) {
    for file in written {
        if file.private {
            println!("wrote {} (private key, mode 0600)", file.path.display());
        } else {
            println!("wrote {}", file.path.display());
        }
    }
}

fn print_crl(written: &pki::CrlWritten) {
    let next = written
        .next_update
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    println!(
        "wrote {} ({} revoked; valid until {next}: refresh it before then with `mtls pki crl`)",
        written.path.display(),
        written.revoked.len()
    );
}
