//! The `.p12` bundles of `mtls pki init` and `mtls pki client`, read back by
//! the system `openssl` and by `mtls inspect`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::mtls_command;

const PASSWORD_VAR: &str = "MTLS_TEST_P12_PASSWORD";
const PASSWORD: &str = "correct horse battery staple";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mtls ARGS` in `dir`, with the test password in the environment.
fn mtls(dir: &Path, args: &[&str]) -> Output {
    mtls_command(dir)
        .args(args)
        .env(PASSWORD_VAR, PASSWORD)
        .output()
        .unwrap()
}

/// `openssl pkcs12 -info -noout` with the password from `var`; `None` when
/// it could not be read. OpenSSL 3 is retried with `-legacy` for bundles
/// whose algorithms moved to the legacy provider.
fn openssl_info(openssl: &Path, p12: &Path, var: &str, password: &str) -> Result<String, String> {
    let run = |legacy: bool| {
        let mut command = Command::new(openssl);
        command.args(["pkcs12", "-info", "-noout", "-passin"]);
        command.arg(format!("env:{var}")).arg("-in").arg(p12);
        if legacy {
            command.arg("-legacy");
        }
        command.env(var, password).output().unwrap()
    };
    let out = run(false);
    if out.status.success() {
        return Ok(text(&out));
    }
    let legacy = run(true);
    if legacy.status.success() {
        Ok(text(&legacy))
    } else {
        Err(format!("{}\n-legacy: {}", text(&out), text(&legacy)))
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The lines `p12 password for FILE: PASSWORD` of an output, as pairs.
fn printed_passwords(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|line| line.strip_prefix("p12 password for "))
        .map(|rest| {
            let (file, password) = rest.split_once(": ").expect("FILE: PASSWORD");
            (file.to_owned(), password.to_owned())
        })
        .collect()
}

/// The PEM certificates of `openssl pkcs12 -nokeys` (leaf and chain).
fn openssl_certificates(openssl: &Path, p12: &PathBuf) -> String {
    let out = Command::new(openssl)
        .args(["pkcs12", "-nokeys", "-passin"])
        .arg(format!("env:{PASSWORD_VAR}"))
        .arg("-in")
        .arg(p12)
        .env(PASSWORD_VAR, PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    stdout(&out)
}

#[test]
fn init_writes_a_modern_p12_that_openssl_opens_with_the_password_only() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = mtls(
        dir.path(),
        &["pki", "init", "--p12-password-env", PASSWORD_VAR],
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    assert!(
        printed.contains(
            "wrote pki/client.p12 (PKCS#12: certificate, private key and CA; AES-256-CBC, PBKDF2-HMAC-SHA256, SHA-256 MAC; password from $MTLS_TEST_P12_PASSWORD; mode 0600)"
        ),
        "{printed}"
    );
    assert!(
        !text(&out).contains(PASSWORD),
        "the password is never printed"
    );
    assert!(printed_passwords(&printed).is_empty(), "{printed}");

    let p12 = dir.path().join("pki/client.p12");
    assert_eq!(mode(&p12), 0o600);
    let info = openssl_info(&openssl, &p12, PASSWORD_VAR, PASSWORD).unwrap();
    for expected in [
        "MAC: sha256",
        "PBES2, PBKDF2, AES-256-CBC",
        "PRF hmacWithSHA256",
        "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC",
    ] {
        assert!(info.contains(expected), "`{expected}` in: {info}");
    }
    assert!(!info.contains("3DES") && !info.contains("sha1"), "{info}");

    let wrong = openssl_info(&openssl, &p12, PASSWORD_VAR, "not the password");
    let err = wrong.expect_err("a wrong password must fail");
    assert!(err.contains("verify") || err.contains("error"), "{err}");

    // The bundle is the client's certificate with the CA as its chain.
    let pems = openssl_certificates(&openssl, &p12);
    let client = std::fs::read_to_string(dir.path().join("pki/client.crt")).unwrap();
    let ca = std::fs::read_to_string(dir.path().join("pki/ca.crt")).unwrap();
    assert!(pems.contains(client.trim()), "{pems}");
    assert!(pems.contains(ca.trim()), "{pems}");
    assert!(pems.contains("friendlyName: CN=client"), "{pems}");
}

#[test]
fn the_legacy_p12_uses_3des_and_a_sha1_mac() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let init = mtls(
        dir.path(),
        &["pki", "init", "--p12-password-env", PASSWORD_VAR],
    );
    assert!(init.status.success(), "{}", text(&init));
    let out = mtls(
        dir.path(),
        &[
            "pki",
            "client",
            "bob",
            "--p12-legacy",
            "--p12-password-env",
            PASSWORD_VAR,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    for line in [
        "wrote pki/bob.crt",
        "wrote pki/bob.key (private key, mode 0600)",
        "wrote pki/bob.p12 (PKCS#12: certificate, private key and CA; legacy 3DES, SHA-1 MAC;",
    ] {
        assert!(printed.contains(line), "{line} in: {printed}");
    }

    let p12 = dir.path().join("pki/bob.p12");
    assert_eq!(mode(&p12), 0o600);
    let info = openssl_info(&openssl, &p12, PASSWORD_VAR, PASSWORD).unwrap();
    for expected in [
        "MAC: sha1",
        "pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048",
        "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC",
    ] {
        assert!(info.contains(expected), "`{expected}` in: {info}");
    }
    assert!(!info.contains("AES"), "{info}");
    assert!(openssl_info(&openssl, &p12, PASSWORD_VAR, "wrong").is_err());
    let pems = openssl_certificates(&openssl, &p12);
    let bob = std::fs::read_to_string(dir.path().join("pki/bob.crt")).unwrap();
    assert!(pems.contains(bob.trim()), "{pems}");

    // Issued once; a second time needs --force, and the .p12 is named.
    let again = mtls(
        dir.path(),
        &["pki", "client", "bob", "--p12-password-env", PASSWORD_VAR],
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("pki/bob.p12"), "{}", text(&again));
    let forced = mtls(
        dir.path(),
        &[
            "pki",
            "client",
            "bob",
            "--force",
            "--p12-password-env",
            PASSWORD_VAR,
        ],
    );
    assert!(forced.status.success(), "{}", text(&forced));
    let info = openssl_info(&openssl, &p12, PASSWORD_VAR, PASSWORD).unwrap();
    assert!(info.contains("AES-256-CBC"), "modern again: {info}");
}

#[test]
fn mtls_inspect_reads_the_modern_and_the_legacy_p12() {
    let dir = tempfile::tempdir().unwrap();
    let init = mtls(
        dir.path(),
        &["pki", "init", "--p12-password-env", PASSWORD_VAR],
    );
    assert!(init.status.success(), "{}", text(&init));
    let legacy = mtls(
        dir.path(),
        &[
            "pki",
            "client",
            "carol",
            "--p12-legacy",
            "--p12-password-env",
            PASSWORD_VAR,
        ],
    );
    assert!(legacy.status.success(), "{}", text(&legacy));

    for (file, cn) in [("pki/client.p12", "client"), ("pki/carol.p12", "carol")] {
        let out = mtls(
            dir.path(),
            &["inspect", "--password-env", PASSWORD_VAR, file],
        );
        assert!(out.status.success(), "{file}: {}", text(&out));
        let shown = stdout(&out);
        assert!(
            shown.contains(&format!("Subject              CN={cn}")),
            "{shown}"
        );
        assert!(
            shown.contains("Subject              CN=mtls development CA"),
            "the CA is in the chain: {shown}"
        );
        assert!(shown.contains("certificate 2 of 2"), "{shown}");

        let wrong = mtls_command(dir.path())
            .args(["inspect", "--password-env", PASSWORD_VAR, file])
            .env(PASSWORD_VAR, "wrong password")
            .output()
            .unwrap();
        assert_eq!(wrong.status.code(), Some(2), "{file}: {}", text(&wrong));
        assert!(text(&wrong).contains("password"), "{}", text(&wrong));
    }
}

#[test]
fn a_generated_password_is_printed_once_and_opens_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = mtls_command(dir.path())
        .args(["pki", "init", "--client", "client", "--client", "alice"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    let passwords = printed_passwords(&printed);
    let files: Vec<&str> = passwords.iter().map(|(file, _)| file.as_str()).collect();
    assert_eq!(files, ["client.p12", "alice.p12"], "{printed}");
    let (client, alice) = (&passwords[0].1, &passwords[1].1);
    assert_ne!(client, alice, "one password per bundle");
    for password in [client, alice] {
        assert!(password.len() >= 20, "{password}");
        assert_eq!(printed.matches(password.as_str()).count(), 1, "{printed}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains(password.as_str()));
    }
    assert!(
        printed.contains("wrote pki/alice.p12 (PKCS#12: certificate, private key and CA; AES-256-CBC, PBKDF2-HMAC-SHA256, SHA-256 MAC; generated password; mode 0600)"),
        "{printed}"
    );
    // The password line follows its file's line.
    let lines: Vec<&str> = printed.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("p12 password for client.p12: "))
        .unwrap();
    assert!(
        lines[at - 1].starts_with("wrote pki/client.p12 "),
        "{printed}"
    );

    for (file, password) in &passwords {
        let path = dir.path().join("pki").join(file);
        assert_eq!(mode(&path), 0o600);
        let inspect = mtls_command(dir.path())
            .args(["inspect", "--password-env", PASSWORD_VAR])
            .arg(&path)
            .env(PASSWORD_VAR, password)
            .output()
            .unwrap();
        assert!(inspect.status.success(), "{file}: {}", text(&inspect));
        if let Some(openssl) = common::system_openssl() {
            openssl_info(&openssl, &path, PASSWORD_VAR, password).unwrap();
            assert!(openssl_info(&openssl, &path, PASSWORD_VAR, "wrong").is_err());
        }
    }
}

#[test]
fn a_missing_or_empty_password_variable_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let unset = mtls_command(dir.path())
        .args([
            "pki",
            "init",
            "--p12-password-env",
            "MTLS_TEST_UNSET_VARIABLE",
        ])
        .env_remove("MTLS_TEST_UNSET_VARIABLE")
        .output()
        .unwrap();
    assert_eq!(unset.status.code(), Some(2));
    assert!(
        text(&unset).contains(
            "the environment variable `MTLS_TEST_UNSET_VARIABLE` (--p12-password-env) is not set"
        ),
        "{}",
        text(&unset)
    );
    let empty = mtls_command(dir.path())
        .args(["pki", "init", "--p12-password-env", PASSWORD_VAR])
        .env(PASSWORD_VAR, "")
        .output()
        .unwrap();
    assert_eq!(empty.status.code(), Some(2));
    assert!(text(&empty).contains("is empty"), "{}", text(&empty));
    assert!(!dir.path().join("pki").exists(), "nothing was written");
}

#[test]
fn an_existing_p12_is_not_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pki")).unwrap();
    std::fs::write(dir.path().join("pki/client.p12"), "keep me").unwrap();
    let out = mtls(dir.path(), &["pki", "init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("refusing to overwrite existing files: `pki/client.p12`"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("pki/ca.crt").exists());
    assert_eq!(
        std::fs::read(dir.path().join("pki/client.p12")).unwrap(),
        b"keep me"
    );
}
