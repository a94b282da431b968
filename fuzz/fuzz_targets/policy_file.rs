//! The TOML policy file (`--policy`): arbitrary text through
//! `Policy::from_toml`, and every policy that loads judged for a fixed
//! identity (fuzz/fixtures/alice.der: CN alice, O Example Corp, OU
//! engineering, DNS, SPIFFE URI and email SANs) on the paths it names.
//!
//! Asserts, beyond "never panics":
//! - a loaded policy is well formed: unique rule names, no empty rule,
//!   fingerprints normalised, path prefixes starting with `/`, every path
//!   naming at least one existing rule;
//! - a verdict is consistent: `AnyVerified` only without rules, `Rule(name)`
//!   only for an existing rule that matches, `Denied` only when no rule
//!   applicable to the path matches;
//! - the Azure-style environment allowlists never panic on the same text.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mtls::cert::CertDetails;
use mtls::policy::{Policy, Verdict};

fn alice() -> &'static CertDetails {
    static ALICE: OnceLock<CertDetails> = OnceLock::new();
    ALICE.get_or_init(|| CertDetails::from_der(include_bytes!("../fixtures/alice.der")).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut env = Policy::default();
    let _ = env.add_env_allowlists(Some(text), Some(text));

    let Ok(policy) = Policy::from_toml(text) else {
        return;
    };
    for (i, rule) in policy.rules.iter().enumerate() {
        assert!(
            policy.rules[..i].iter().all(|r| r.name != rule.name),
            "rule `{}` defined twice",
            rule.name
        );
        let conditions = [
            &rule.cn,
            &rule.o,
            &rule.ou,
            &rule.issuer,
            &rule.dns,
            &rule.uri,
            &rule.email,
            &rule.spiffe_id,
            &rule.spiffe_trust_domain,
            &rule.sha256,
            &rule.sha1,
        ];
        assert!(
            conditions.iter().any(|c| !c.is_empty()),
            "rule `{}` has no condition",
            rule.name
        );
        for (prints, length) in [(&rule.sha256, 64), (&rule.sha1, 40)] {
            for print in prints {
                assert_eq!(print.len(), length, "{print}");
                assert!(print.chars().all(|c| matches!(c, '0'..='9' | 'A'..='F')));
            }
        }
    }
    for scoped in &policy.paths {
        assert!(scoped.prefix.starts_with('/'));
        assert!(!scoped.rules.is_empty());
        assert!(scoped.rules.iter().all(|&i| i < policy.rules.len()));
    }

    let cert = alice();
    let mut paths: Vec<String> = ["/", "/healthz", "/admin", "/admin/users", "/api/x", ""]
        .into_iter()
        .map(str::to_owned)
        .collect();
    for prefix in policy
        .public_paths
        .iter()
        .chain(policy.paths.iter().map(|p| &p.prefix))
    {
        paths.push(prefix.clone());
        paths.push(format!("{prefix}/x"));
        paths.push(format!("{prefix}x"));
    }
    for path in &paths {
        let _ = policy.is_public(path);
        match policy.judge(path, cert) {
            Verdict::AnyVerified => assert!(!policy.restricts()),
            Verdict::Rule(name) => {
                let rule = policy
                    .rules
                    .iter()
                    .find(|r| r.name == name)
                    .expect("the verdict names an existing rule");
                assert!(rule.matches(cert), "rule `{name}` does not match");
            }
            Verdict::Denied { .. } => {
                assert!(policy.restricts());
                if policy.paths.is_empty() {
                    assert!(policy.rules.iter().all(|r| !r.matches(cert)));
                }
            }
        }
    }
});
