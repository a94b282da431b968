use std::process::ExitCode;
use std::time::Duration;

use mtls::cert::CertDetails;
use mtls::cli::InspectArgs;
use mtls::{input, inspect};

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let mut decoded: Vec<(String, CertDetails)> = Vec::new();
    if let Some(target) = &args.connect {
        let chain = super::small_runtime()?.block_on(inspect::fetch_chain(
            target,
            args.servername.as_deref(),
            Duration::from_secs(10),
        ))?;
        for der in chain {
            decoded.push((target.clone(), CertDetails::from_der(&der)?));
        }
    }
    let password = super::password_source(args.password_env.clone());
    for path in &args.files {
        let bytes = input::read(path)?;
        for der in input::certificates(path, &bytes, &password)? {
            decoded.push((path.display().to_string(), CertDetails::from_der(&der)?));
        }
    }

    if args.json {
        let details: Vec<&CertDetails> = decoded.iter().map(|(_, d)| d).collect();
        println!("{}", serde_json::to_string_pretty(&details)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (i, (source, details)) in decoded.iter().enumerate() {
        let in_source = decoded.iter().filter(|(s, _)| s == source).count();
        let index = decoded[..i].iter().filter(|(s, _)| s == source).count();
        if i > 0 {
            println!();
        }
        print!(
            "{}",
            inspect::render_text(source, index, in_source, details)
        );
    }
    Ok(ExitCode::SUCCESS)
}
