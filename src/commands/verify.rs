use std::process::ExitCode;

use anyhow::Context;
use mtls::cli::VerifyArgs;
use mtls::input;
use mtls::verify::{Verification, VerifyError};
use rustls::pki_types::UnixTime;

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let password = super::password_source(args.password_env.clone());
    let load = |path: &std::path::Path| -> anyhow::Result<_> {
        let bytes = input::read(path)?;
        Ok(input::certificates(path, &bytes, &password)?)
    };
    let trusted = load(&args.ca).context("--ca")?;
    let mut leaf_chain = load(&args.leaf)?;
    let leaf = leaf_chain.remove(0);
    let mut intermediates = leaf_chain;
    for path in &args.untrusted {
        intermediates.extend(load(path).context("--untrusted")?);
    }
    let mut crls = Vec::new();
    for path in &args.crl {
        crls.extend(input::crls(path).context("--crl")?);
    }
    let at = match &args.at {
        Some(text) => parse_time(text)?,
        None => UnixTime::now(),
    };
    let verification = Verification {
        trusted: &trusted,
        intermediates: &intermediates,
        crls: &crls,
        purpose: args.purpose,
        dns_name: args.dns_name.as_deref(),
        at,
        strict: args.strict,
    };
    match verification.run(&leaf) {
        Ok(chain) => {
            println!("OK");
            let last = chain.len() - 1;
            for (depth, subject) in chain.iter().enumerate() {
                let note = if depth == last && depth > 0 {
                    "  (trust anchor)"
                } else {
                    ""
                };
                println!("  {depth}: {subject}{note}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Invalid(reason)) => {
            println!("FAILED: {reason}");
            Ok(super::failed())
        }
        Err(err @ VerifyError::Unusable(_)) => Err(err.into()),
    }
}

fn parse_time(text: &str) -> anyhow::Result<UnixTime> {
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| {
            format!("--at `{text}` is not an RFC 3339 time, e.g. 2030-01-01T00:00:00Z")
        })?;
    let secs = u64::try_from(time.unix_timestamp())
        .map_err(|_| anyhow::anyhow!("--at `{text}` is before 1970"))?;
    Ok(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        secs,
    )))
}
