//! Who may call what: public paths, allowlist rules (from the Azure-style
//! environment variables and from a TOML policy file) and per-path rule sets.
//!
//! Fail closed: once any allowlist is configured, a verified certificate
//! that no applicable rule matches is refused.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::cert::CertDetails;

/// Paths that need no certificate when no policy file says otherwise.
pub const DEFAULT_PUBLIC_PATHS: [&str; 1] = ["/healthz"];

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the policy file `{path}` (--policy / POLICY): {cause}", path = .path.display())]
    Unreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("policy file `{path}` (--policy / POLICY): {message}", path = .path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{variable}: `{value}` is not a SHA-1 thumbprint (40 hex digits; colons and spaces are ignored)"
    )]
    BadThumbprint {
        variable: &'static str,
        value: String,
    },
}

/// One allowlist rule: every field it sets must match; a field with several
/// values matches when any value does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub cn: Vec<String>,
    pub o: Vec<String>,
    pub ou: Vec<String>,
    pub issuer: Vec<String>,
    pub dns: Vec<String>,
    pub uri: Vec<String>,
    pub email: Vec<String>,
    pub spiffe_id: Vec<String>,
    pub spiffe_trust_domain: Vec<String>,
    /// Normalised: uppercase hex without separators.
    pub sha256: Vec<String>,
    pub sha1: Vec<String>,
}

impl Rule {
    fn is_empty(&self) -> bool {
        self.cn.is_empty()
            && self.o.is_empty()
            && self.ou.is_empty()
            && self.issuer.is_empty()
            && self.dns.is_empty()
            && self.uri.is_empty()
            && self.email.is_empty()
            && self.spiffe_id.is_empty()
            && self.spiffe_trust_domain.is_empty()
            && self.sha256.is_empty()
            && self.sha1.is_empty()
    }

    pub fn matches(&self, cert: &CertDetails) -> bool {
        let attribute = |kind: &str, wanted: &[String]| {
            wanted.is_empty()
                || cert
                    .subject
                    .attributes
                    .iter()
                    .any(|a| a.kind == kind && wanted.contains(&a.value))
        };
        let any_of = |wanted: &[String], have: &[String], ignore_case: bool| {
            wanted.is_empty()
                || have.iter().any(|h| {
                    wanted.iter().any(|w| {
                        if ignore_case {
                            w.eq_ignore_ascii_case(h)
                        } else {
                            w == h
                        }
                    })
                })
        };
        let sans = &cert.subject_alt_names;
        let trust_domain = || cert.spiffe_id.as_deref().and_then(spiffe_trust_domain);
        attribute("CN", &self.cn)
            && attribute("O", &self.o)
            && attribute("OU", &self.ou)
            && any_of(
                &self.issuer,
                std::slice::from_ref(&cert.issuer.rfc4514),
                false,
            )
            && any_of(&self.dns, &sans.dns, true)
            && any_of(&self.uri, &sans.uri, false)
            && any_of(&self.email, &sans.email, true)
            && any_of(&self.spiffe_id, cert.spiffe_id.as_slice(), false)
            && (self.spiffe_trust_domain.is_empty()
                || any_of(&self.spiffe_trust_domain, trust_domain().as_slice(), true))
            && any_of(
                &self.sha256,
                std::slice::from_ref(&cert.fingerprints.sha256),
                false,
            )
            && any_of(
                &self.sha1,
                std::slice::from_ref(&cert.fingerprints.sha1),
                false,
            )
    }
}

/// A path prefix and the rules that alone apply under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRules {
    pub prefix: String,
    /// Indexes into `Policy::rules`.
    pub rules: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub public_paths: Vec<String>,
    pub rules: Vec<Rule>,
    pub paths: Vec<PathRules>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            public_paths: DEFAULT_PUBLIC_PATHS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            rules: Vec::new(),
            paths: Vec::new(),
        }
    }
}

/// The outcome for one verified certificate on one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// No allowlist is configured: any verified certificate is welcome.
    AnyVerified,
    /// Allowed by the named rule.
    Rule(&'a str),
    /// No applicable rule matched; names the rule set that was tried.
    Denied { tried: String },
}

impl Policy {
    /// True when any allowlist is configured (then deny by default).
    pub fn restricts(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Public paths match exactly or as a prefix ending at a `/`.
    pub fn is_public(&self, path: &str) -> bool {
        self.public_paths.iter().any(|p| prefix_matches(p, path))
    }

    /// Allocates only to explain a refusal.
    pub fn judge(&self, path: &str, cert: &CertDetails) -> Verdict<'_> {
        if !self.restricts() {
            return Verdict::AnyVerified;
        }
        let scoped = self.paths.iter().find(|p| prefix_matches(&p.prefix, path));
        if let Some(rule) = self.candidates(scoped).find(|rule| rule.matches(cert)) {
            return Verdict::Rule(&rule.name);
        }
        let names: Vec<&str> = self.candidates(scoped).map(|r| r.name.as_str()).collect();
        let names = names.join(", ");
        Verdict::Denied {
            tried: match scoped {
                Some(scoped) => format!("the rules for {} ({names})", scoped.prefix),
                None => format!("the allowlist ({names})"),
            },
        }
    }

    /// The rules that apply: those of the path's rule set, or all.
    fn candidates<'a>(&'a self, scoped: Option<&'a PathRules>) -> impl Iterator<Item = &'a Rule> {
        let (all, some) = match scoped {
            Some(scoped) => (None, Some(scoped.rules.iter().map(|&i| &self.rules[i]))),
            None => (Some(self.rules.iter()), None),
        };
        all.into_iter().flatten().chain(some.into_iter().flatten())
    }

    /// Adds the Azure App Service style allowlists from the environment.
    pub fn add_env_allowlists(
        &mut self,
        common_names: Option<&str>,
        thumbprints: Option<&str>,
    ) -> Result<(), PolicyError> {
        let list = |text: &str| -> Vec<String> {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        if let Some(names) = common_names.map(list).filter(|l| !l.is_empty()) {
            self.rules.push(Rule {
                name: "ALLOWED_CLIENT_CERT_COMMON_NAMES".to_owned(),
                cn: names,
                ..Rule::default()
            });
        }
        if let Some(prints) = thumbprints.map(list).filter(|l| !l.is_empty()) {
            let sha1 = prints
                .iter()
                .map(|p| {
                    normalise_fingerprint(p, 20).ok_or_else(|| PolicyError::BadThumbprint {
                        variable: "ALLOWED_CLIENT_CERT_THUMBPRINTS",
                        value: p.clone(),
                    })
                })
                .collect::<Result<_, _>>()?;
            self.rules.push(Rule {
                name: "ALLOWED_CLIENT_CERT_THUMBPRINTS".to_owned(),
                sha1,
                ..Rule::default()
            });
        }
        Ok(())
    }

    /// Loads a TOML policy file; errors name the line.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|cause| PolicyError::Unreadable {
            path: path.to_owned(),
            cause,
        })?;
        Self::from_toml(&text).map_err(|message| PolicyError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: PolicyFile = toml::from_str(text).map_err(|err| one_line(&err.to_string()))?;
        let line_of = |span: std::ops::Range<usize>| text[..span.start].matches('\n').count() + 1;

        let mut policy = Policy::default();
        if let Some(public) = file.public {
            policy.public_paths = public;
        }
        for raw in file.rule {
            let line = line_of(raw.name.span());
            let name = raw.name.into_inner();
            if policy.rules.iter().any(|r| r.name == name) {
                return Err(format!(
                    "line {line}: a rule named `{name}` is already defined"
                ));
            }
            let fingerprints = |values: Vec<String>, bytes: usize, field: &str| {
                values
                    .into_iter()
                    .map(|v| {
                        normalise_fingerprint(&v, bytes).ok_or_else(|| {
                            format!(
                                "line {line}: rule `{name}`: {field} `{v}` is not {} hex digits",
                                bytes * 2
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            let rule = Rule {
                cn: raw.cn.into_vec(),
                o: raw.o.into_vec(),
                ou: raw.ou.into_vec(),
                issuer: raw.issuer.into_vec(),
                dns: raw.dns.into_vec(),
                uri: raw.uri.into_vec(),
                email: raw.email.into_vec(),
                spiffe_id: raw.spiffe_id.into_vec(),
                spiffe_trust_domain: raw.spiffe_trust_domain.into_vec(),
                sha256: fingerprints(raw.sha256.into_vec(), 32, "sha256")?,
                sha1: fingerprints(raw.sha1.into_vec(), 20, "sha1")?,
                name: name.clone(),
            };
            if rule.is_empty() {
                return Err(format!(
                    "line {line}: rule `{name}` matches nothing: give it at least one of cn, o, ou, issuer, dns, uri, email, spiffe_id, spiffe_trust_domain, sha256, sha1"
                ));
            }
            policy.rules.push(rule);
        }
        for raw in file.path {
            let line = line_of(raw.prefix.span());
            let prefix = raw.prefix.into_inner();
            if !prefix.starts_with('/') {
                return Err(format!(
                    "line {line}: path prefix `{prefix}` must start with /"
                ));
            }
            let mut rules = Vec::new();
            for name in raw.rules {
                let line = line_of(name.span());
                let name = name.into_inner();
                let index = policy
                    .rules
                    .iter()
                    .position(|r| r.name == name)
                    .ok_or_else(|| {
                        format!(
                            "line {line}: path `{prefix}` names rule `{name}`, which is not defined"
                        )
                    })?;
                rules.push(index);
            }
            if rules.is_empty() {
                return Err(format!(
                    "line {line}: path `{prefix}` lists no rules; make it public instead (public = [...])"
                ));
            }
            policy.paths.push(PathRules { prefix, rules });
        }
        Ok(policy)
    }
}

/// `prefix` covers `path` exactly or as a directory (`/admin` covers `/admin/x`).
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// The trust domain of a SPIFFE ID (`spiffe://example.org/ns/x` -> `example.org`).
pub fn spiffe_trust_domain(id: &str) -> Option<String> {
    let rest = id.strip_prefix("spiffe://")?;
    let domain = rest.split('/').next()?;
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// Uppercase hex without separators, if `text` is a fingerprint of `bytes`
/// bytes written in any case with or without colons, spaces or dashes.
pub fn normalise_fingerprint(text: &str, bytes: usize) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-' | '\t'))
        .collect::<String>()
        .to_ascii_uppercase();
    (hex.len() == bytes * 2 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && *l != "^")
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    public: Option<Vec<String>>,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    path: Vec<RawPath>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    #[serde(default)]
    cn: OneOrMany,
    #[serde(default)]
    o: OneOrMany,
    #[serde(default)]
    ou: OneOrMany,
    #[serde(default)]
    issuer: OneOrMany,
    #[serde(default)]
    dns: OneOrMany,
    #[serde(default)]
    uri: OneOrMany,
    #[serde(default)]
    email: OneOrMany,
    #[serde(default)]
    spiffe_id: OneOrMany,
    #[serde(default)]
    spiffe_trust_domain: OneOrMany,
    #[serde(default)]
    sha256: OneOrMany,
    #[serde(default)]
    sha1: OneOrMany,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPath {
    prefix: Spanned<String>,
    rules: Vec<Spanned<String>>,
}

/// `cn = "alice"` or `cn = ["alice", "bob"]`.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(value) => vec![value],
            OneOrMany::Many(values) => values,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix_matches("/admin", "/admin"));
        assert!(prefix_matches("/admin", "/admin/users"));
        assert!(!prefix_matches("/admin", "/administrator"));
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api/", "/api/x"));
    }

    #[test]
    fn spiffe_trust_domains() {
        assert_eq!(
            spiffe_trust_domain("spiffe://Example.org/ns/a"),
            Some("example.org".into())
        );
        assert_eq!(
            spiffe_trust_domain("spiffe://example.org"),
            Some("example.org".into())
        );
        assert_eq!(spiffe_trust_domain("https://example.org/x"), None);
        assert_eq!(spiffe_trust_domain("spiffe:///x"), None);
    }

    #[test]
    fn policy_errors_name_the_line() {
        let err = Policy::from_toml(
            "[[rule]]\nname = \"a\"\ncn = \"x\"\n\n[[rule]]\nname = \"b\"\nsha1 = \"12:34\"\n",
        )
        .unwrap_err();
        assert!(
            err.starts_with("line 6: rule `b`: sha1 `12:34` is not 40 hex digits"),
            "{err}"
        );

        let err = Policy::from_toml("[[rule]]\nname = \"a\"\n").unwrap_err();
        assert!(err.starts_with("line 2: rule `a` matches nothing"), "{err}");

        let err = Policy::from_toml("[[rule]]\nname = \"a\"\ncn = \"x\"\n[[path]]\nprefix = \"/admin\"\nrules = [\"nope\"]\n")
            .unwrap_err();
        assert!(
            err.starts_with("line 6: path `/admin` names rule `nope`"),
            "{err}"
        );

        let err = Policy::from_toml("[[rule]]\nname = \"a\"\ncommon_name = \"x\"\n").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("unknown field `common_name`"), "{err}");

        let err = Policy::from_toml("public = [\"/healthz\"\n").unwrap_err();
        assert!(err.contains("line 1") || err.contains("line 2"), "{err}");
    }

    fn spelled(hex: &str, style: u8) -> String {
        let pairs: Vec<String> = hex
            .as_bytes()
            .chunks(2)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        match style % 4 {
            0 => hex.to_ascii_lowercase(),
            1 => pairs.join(":"),
            2 => pairs.join(" ").to_ascii_lowercase(),
            _ => format!("  {}  ", pairs.join(":").to_ascii_lowercase()),
        }
    }

    /// A decoded certificate to vary: fields are replaced per test case.
    fn template() -> CertDetails {
        use std::sync::OnceLock;
        static TEMPLATE: OnceLock<CertDetails> = OnceLock::new();
        TEMPLATE
            .get_or_init(|| {
                let ca = crate::pki::Authority::generate("T").unwrap();
                let issued = ca.issue(&crate::pki::LeafSpec::client("x")).unwrap();
                let der =
                    rustls_pki_types::pem::PemObject::from_pem_slice(issued.cert_pem.as_bytes())
                        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
                        .unwrap();
                CertDetails::from_der(&der).unwrap()
            })
            .clone()
    }

    fn with_cn(cn: &str) -> CertDetails {
        let mut cert = template();
        cert.subject.attributes[0].value = cn.to_owned();
        cert
    }

    #[test]
    fn verdicts_name_the_rule_or_the_rules_tried() {
        let rule = |name: &str, cn: &str| Rule {
            name: name.to_owned(),
            cn: vec![cn.to_owned()],
            ..Rule::default()
        };
        let policy = Policy {
            public_paths: Vec::new(),
            rules: vec![rule("alice", "alice"), rule("bob", "bob")],
            paths: vec![PathRules {
                prefix: "/admin".to_owned(),
                rules: vec![1],
            }],
        };
        assert_eq!(policy.judge("/", &with_cn("alice")), Verdict::Rule("alice"));
        assert_eq!(policy.judge("/", &with_cn("bob")), Verdict::Rule("bob"));
        assert_eq!(
            policy.judge("/admin/x", &with_cn("bob")),
            Verdict::Rule("bob")
        );
        assert_eq!(
            policy.judge("/admin/x", &with_cn("alice")),
            Verdict::Denied {
                tried: "the rules for /admin (bob)".to_owned()
            }
        );
        assert_eq!(
            policy.judge("/", &with_cn("carol")),
            Verdict::Denied {
                tried: "the allowlist (alice, bob)".to_owned()
            }
        );
        assert_eq!(
            Policy::default().judge("/", &with_cn("carol")),
            Verdict::AnyVerified
        );
    }

    #[test]
    fn spiffe_rules_match_the_id_and_its_trust_domain() {
        let mut cert = template();
        cert.spiffe_id = Some("spiffe://Example.org/ns/prod".to_owned());
        let by_domain = Rule {
            name: "domain".to_owned(),
            spiffe_trust_domain: vec!["example.ORG".to_owned()],
            ..Rule::default()
        };
        let by_id = Rule {
            name: "id".to_owned(),
            spiffe_id: vec!["spiffe://Example.org/ns/prod".to_owned()],
            ..Rule::default()
        };
        assert!(by_domain.matches(&cert));
        assert!(by_id.matches(&cert));
        cert.spiffe_id = Some("spiffe://other.org/ns/prod".to_owned());
        assert!(!by_domain.matches(&cert));
        assert!(!by_id.matches(&cert));
        cert.spiffe_id = None;
        assert!(!by_domain.matches(&cert));
        assert!(!by_id.matches(&cert));
    }

    proptest! {
        #[test]
        fn a_cn_rule_matches_exactly_its_names(names in proptest::collection::vec("[a-zA-Z0-9 .-]{1,12}", 1..5), cn in "[a-zA-Z0-9 .-]{1,12}") {
            let rule = Rule { name: "r".into(), cn: names.clone(), ..Rule::default() };
            prop_assert_eq!(rule.matches(&with_cn(&cn)), names.contains(&cn));
        }

        #[test]
        fn more_conditions_never_admit_more(cn in "[a-z]{1,6}", other in "[a-z]{1,6}", ou in "[a-z]{1,6}") {
            let cert = with_cn(&cn);
            let loose = Rule { name: "r".into(), cn: vec![other.clone()], ..Rule::default() };
            let strict = Rule { ou: vec![ou], ..loose.clone() };
            prop_assert!(!strict.matches(&cert) || loose.matches(&cert));
        }

        #[test]
        fn a_thumbprint_rule_matches_in_every_spelling(style in 0u8..4) {
            let cert = template();
            let mut policy = Policy::default();
            policy.add_env_allowlists(None, Some(&spelled(&cert.fingerprints.sha1, style))).unwrap();
            prop_assert_eq!(policy.judge("/", &cert), Verdict::Rule("ALLOWED_CLIENT_CERT_THUMBPRINTS"));
            let other = with_cn("someone else");
            let mut other = other;
            other.fingerprints.sha1 = "0".repeat(40);
            prop_assert!(matches!(policy.judge("/", &other), Verdict::Denied { .. }), "other cert admitted");
        }

        #[test]
        fn every_spelling_of_a_fingerprint_normalises_the_same(bytes in proptest::collection::vec(any::<u8>(), 20), style in 0u8..4) {
            let canonical = hex::encode_upper(&bytes);
            prop_assert_eq!(normalise_fingerprint(&spelled(&canonical, style), 20), Some(canonical));
        }

        #[test]
        fn wrong_lengths_and_non_hex_never_normalise(text in "[0-9a-zA-Z:]{0,80}") {
            if let Some(hex) = normalise_fingerprint(&text, 20) {
                prop_assert_eq!(hex.len(), 40);
                prop_assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
            }
        }

        #[test]
        fn public_prefixes_never_leak_to_siblings(suffix in "[a-z]{1,8}") {
            let policy = Policy::default();
            let sibling = format!("/healthz{suffix}");
            prop_assert!(!policy.is_public(&sibling));
            let child = format!("/healthz/{suffix}");
            prop_assert!(policy.is_public(&child));
        }
    }
}
