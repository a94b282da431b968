use std::process::ExitCode;

use anyhow::bail;
use mtls::cli::{PkiClientArgs, PkiDirArgs, PkiInitArgs, PkiP12Args, PkiRevokeArgs};
use mtls::pki;

pub fn init(args: PkiInitArgs) -> anyhow::Result<ExitCode> {
    let p12 = p12_options(&args.p12)?;
    let options = pki::InitOptions {
        dir: args.dir,
        domain: args.domain,
        clients: args.clients,
        force: args.force,
        p12: Some(p12),
    };
    print_written(&pki::init(&options)?, &args.p12);
    println!(
        "development PKI ready: CA `{}`, server certificate for {}",
        pki::CA_COMMON_NAME,
        options.domain
    );
    Ok(ExitCode::SUCCESS)
}

pub fn client(args: PkiClientArgs) -> anyhow::Result<ExitCode> {
    let p12 = p12_options(&args.p12)?;
    let written = pki::add_client_with_p12(&args.dir.dir, &args.name, args.force, Some(&p12))?;
    print_written(&written, &args.p12);
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

/// The password and encryption of the .p12 bundles, read before anything
/// is written so a missing variable leaves no files behind.
fn p12_options(args: &PkiP12Args) -> anyhow::Result<pki::P12Options> {
    let password = match &args.p12_password_env {
        Some(var) => match std::env::var(var) {
            Ok(value) if value.is_empty() => bail!(
                "the environment variable `{var}` (--p12-password-env) is empty; set it to the .p12 password, or leave out --p12-password-env for a generated one"
            ),
            Ok(value) => pki::P12Password::Given(pki::Password::new(value)),
            Err(std::env::VarError::NotPresent) => bail!(
                "the environment variable `{var}` (--p12-password-env) is not set; export it with the .p12 password, or leave out --p12-password-env for a generated one"
            ),
            Err(std::env::VarError::NotUnicode(_)) => {
                bail!("the environment variable `{var}` (--p12-password-env) is not valid UTF-8")
            }
        },
        None => pki::P12Password::Generate,
    };
    let encryption = if args.p12_legacy {
        pki::P12Encryption::Legacy
    } else {
        pki::P12Encryption::Modern
    };
    Ok(pki::P12Options {
        password,
        encryption,
    })
}

fn print_written(written: &[pki::WrittenFile], p12_args: &PkiP12Args) {
    for file in written {
        match &file.p12 {
            Some(p12) => {
                let password = match (&p12.generated_password, &p12_args.p12_password_env) {
                    (Some(_), _) | (None, None) => "generated password".to_owned(),
                    (None, Some(var)) => format!("password from ${var}"),
                };
                println!(
                    "wrote {} (PKCS#12: certificate, private key and CA; {}; {password}; mode 0600)",
                    file.path.display(),
                    p12.encryption.describe()
                );
                if let Some(password) = &p12.generated_password {
                    let name = file.path.file_name().unwrap_or(file.path.as_os_str());
                    // Shown once, here; it is stored nowhere.
                    println!(
                        "p12 password for {}: {}",
                        name.to_string_lossy(),
                        password.expose()
                    );
                }
            }
            None if file.private => {
                println!("wrote {} (private key, mode 0600)", file.path.display())
            }
            None => println!("wrote {}", file.path.display()),
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
