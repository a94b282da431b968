//! Strict mode: RFC 5280 conformance checks on top of rustls-webpki.
//!
//! rustls-webpki decides whether a chain is valid, and by design it does not
//! check everything RFC 5280 requires of conforming certificates: it ignores
//! the trust anchor's certificate (its validity, extensions and encoding),
//! key identifiers, most criticality rules, CRL profile rules and the
//! syntax of names it does not match against. Strict mode runs rustls-webpki's
//! own path building again and accepts only a path that rustls-webpki accepts
//! *and* whose every certificate, trust anchor included, and every CRL
//! consulted for it conforms to the rules below. Each violation is one line
//! naming the certificate by its subject (RFC 4514) and the rule broken.
//!
//! RFC 5280 rules, for every certificate of the path:
//! - the serial number is positive and at most 20 octets (4.1.2.2), except
//!   for the trust anchor's certificate;
//! - the inner and outer signature algorithms are the same (4.1.1.2);
//! - version 3 when extensions are present, 2 or 3 with unique identifiers
//!   (4.1.2.1, 4.1.2.8, 4.1.2.9);
//! - the issuer name is not empty (4.1.2.4); a CA's subject is not empty
//!   (4.1.2.6); an empty subject comes with a critical subjectAltName
//!   (4.1.2.6, 4.2.1.6);
//! - valid at the validation time, the trust anchor's certificate included
//!   (6.1.3 (a)(2));
//! - no extension twice, none malformed, none critical that neither
//!   rustls-webpki nor strict mode processes (4.2): a critical policy
//!   extension is refused, as rustls-webpki refuses it in intermediates;
//! - authorityKeyIdentifier: non-critical, present with a keyIdentifier in
//!   every certificate but self-signed ones, and equal to the issuer's
//!   subjectKeyIdentifier (4.2.1.1, 4.2.1.2);
//! - subjectKeyIdentifier: non-critical, present in CA certificates (4.2.1.2);
//! - keyUsage: at least one bit; keyCertSign only with cA; a certificate
//!   that issues a certificate of the path asserts keyCertSign (4.2.1.3,
//!   4.2.1.9, 6.1.4 (n));
//! - basicConstraints: present with cA in every issuing certificate, critical
//!   whenever cA is asserted, pathLenConstraint only with cA and keyCertSign
//!   (4.2.1.9);
//! - subjectAltName: not empty, dNSNames in preferred name syntax (a `*`
//!   leftmost label allowed), 4- or 16-octet iPAddresses, rfc822Names with
//!   one `@` (4.2.1.6);
//! - nameConstraints: only in CA certificates, critical, not empty, dNSName
//!   bases in DNS syntax without a leading period, 8- or 32-octet iPAddress
//!   bases (4.2.1.10);
//! - policyConstraints critical and not empty, inhibitAnyPolicy critical
//!   (4.2.1.11, 4.2.1.14); extKeyUsage not empty (4.2.1.12).
//!
//! For CRLs issued by a CA of the path (5.1, 5.2): version 2, the same
//! inner and outer signature algorithm, a nextUpdate, a non-critical CRL
//! number, an authorityKeyIdentifier whose keyIdentifier is the issuer's
//! subjectKeyIdentifier, and an issuer whose keyUsage, if present, asserts
//! cRLSign (4.2.1.3, 6.3.3 (f)).
//!
//! For TLS: a leaf whose keyUsage lacks digitalSignature cannot sign a
//! handshake, the only way rustls uses a certificate key (RFC 8446 4.4.2.2).
//!
//! For [`Purpose::Server`], the CA/Browser Forum Baseline Requirements rules
//! the x509-limbo corpus exercises, where they do not contradict RFC 5280:
//! the leaf's commonName is a character-for-character copy of a SAN entry
//! (7.1.4.3), its extKeyUsage is non-critical and without
//! anyExtendedKeyUsage (7.1.2.7.6, 7.1.2.7.10), its subjectAltName is
//! non-critical when the subject is not empty (7.1.2.7.12); a root has no
//! extKeyUsage and no authorityCertIssuer or authorityCertSerialNumber
//! (7.1.2.1.2, 7.1.2.1.3); no certificate of the path has a DSA key, an EC
//! key off P-256, P-384 and P-521, or an RSA key under 2048 bits or of a
//! size not a multiple of 8 (6.1.5, 7.1.3.1). Not checked: the requirement
//! of an extKeyUsage (RFC 5280 makes it optional) and wildcards over public
//! suffixes (that needs the Public Suffix List).

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, GeneralName, KeyUsage,
    NameConstraints, ParsedExtension, SubjectAlternativeName, X509Extension,
};
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_CRL_DISTRIBUTION_POINTS, OID_X509_EXT_CRL_NUMBER, OID_X509_EXT_EXTENDED_KEY_USAGE,
    OID_X509_EXT_INHIBIT_ANY_POLICY, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_NAME_CONSTRAINTS,
    OID_X509_EXT_POLICY_CONSTRAINTS, OID_X509_EXT_SUBJECT_ALT_NAME,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER, Oid,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name, X509Version};

use crate::cert::dn;
use crate::tls;
use crate::verify::Purpose;

/// The strict-mode violations of the best path rustls-webpki can build for
/// `leaf`: empty when some path conforms, else the violations of the first
/// path rustls-webpki accepted. Call it once rustls has accepted `leaf`;
/// when no path is valid at all, the one entry says so.
pub fn violations(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    trusted: &[CertificateDer<'_>],
    crls: &[CertificateRevocationListDer<'_>],
    purpose: Purpose,
    at: UnixTime,
) -> Vec<String> {
    let mut anchors: Vec<TrustAnchor<'_>> = Vec::new();
    let mut anchor_certs: Vec<&[u8]> = Vec::new();
    for der in trusted {
        if let Ok(anchor) = webpki::anchor_from_trusted_cert(der) {
            anchors.push(anchor);
            anchor_certs.push(der.as_ref());
        }
    }
    let webpki_crls: Vec<webpki::CertRevocationList<'_>> = crls
        .iter()
        .filter_map(|der| webpki::BorrowedCertRevocationList::from_der(der.as_ref()).ok())
        .map(Into::into)
        .collect();
    let crl_refs: Vec<&webpki::CertRevocationList<'_>> = webpki_crls.iter().collect();
    // The revocation settings of rustls' verifiers, as `Verification` uses them.
    let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
        .ok()
        .map(|builder| {
            builder
                .with_depth(webpki::RevocationCheckDepth::Chain)
                .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                .with_expiration_policy(webpki::ExpirationPolicy::Ignore)
                .build()
        });
    let parsed_crls: Vec<(CertificateRevocationList<'_>, &[u8])> = crls
        .iter()
        .filter_map(|der| {
            CertificateRevocationList::from_der(der.as_ref())
                .ok()
                .map(|(_, crl)| (crl, der.as_ref()))
        })
        .collect();

    let end_entity = match webpki::EndEntityCert::try_from(leaf) {
        Ok(end_entity) => end_entity,
        Err(err) => return vec![format!("the leaf cannot be parsed: {err:?}")],
    };
    let usage = match purpose {
        Purpose::Client => webpki::KeyUsage::client_auth(),
        Purpose::Server => webpki::KeyUsage::server_auth(),
    };
    let first: RefCell<Option<Vec<String>>> = RefCell::new(None);
    let check = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
        let chain: Vec<CertificateDer<'_>> = path
            .intermediate_certificates()
            .map(|cert| cert.der())
            .collect();
        let mut found: Option<Vec<String>> = None;
        // Several trusted certificates may make the same trust anchor (a
        // re-issued root); the path conforms if one of them does.
        for (anchor, anchor_der) in anchors.iter().zip(&anchor_certs) {
            if anchor != path.anchor() {
                continue;
            }
            let mut ders: Vec<&[u8]> = vec![leaf.as_ref()];
            ders.extend(chain.iter().map(|der| der.as_ref()));
            ders.push(anchor_der);
            let problems = path_violations(&ders, &parsed_crls, purpose, at);
            if problems.is_empty() {
                return Ok(());
            }
            found.get_or_insert(problems);
        }
        let problems = found.unwrap_or_else(|| {
            vec!["the trust anchor's certificate is not among the trusted ones".to_owned()]
        });
        first.borrow_mut().get_or_insert(problems);
        // Any error that is not fatal makes rustls-webpki try the next path.
        Err(webpki::Error::UnknownIssuer)
    };
    let algs = tls::provider().signature_verification_algorithms.all;
    let result = end_entity.verify_for_usage(
        algs,
        &anchors,
        intermediates,
        at,
        usage,
        revocation,
        Some(&check),
    );
    match result {
        Ok(_) => Vec::new(),
        Err(err) => first
            .into_inner()
            .unwrap_or_else(|| vec![format!("rustls-webpki builds no valid path: {err:?}")]),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Leaf,
    Intermediate,
    Anchor,
}

/// One certificate of the path, parsed.
struct Node<'a> {
    role: Role,
    der: &'a [u8],
    cert: X509Certificate<'a>,
    /// How messages name it: role and subject.
    label: String,
}

impl Node<'_> {
    /// Signs another certificate of the path.
    fn issues(&self) -> bool {
        self.role != Role::Leaf
    }

    fn is_ca(&self) -> bool {
        basic_constraints(&self.cert).is_some_and(|(_, bc)| bc.ca)
    }

    fn self_issued(&self) -> bool {
        self.cert.subject().as_raw() == self.cert.issuer().as_raw()
    }
}

/// All violations of one path: `ders` is leaf first, trust anchor last.
fn path_violations(
    ders: &[&[u8]],
    crls: &[(CertificateRevocationList<'_>, &[u8])],
    purpose: Purpose,
    at: UnixTime,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut nodes = Vec::new();
    for (i, der) in ders.iter().enumerate() {
        let role = match i {
            0 => Role::Leaf,
            i if i + 1 == ders.len() => Role::Anchor,
            _ => Role::Intermediate,
        };
        match X509Certificate::from_der(der) {
            Ok((_, cert)) => {
                let label = label(role, cert.subject());
                nodes.push(Node {
                    role,
                    der,
                    cert,
                    label,
                });
            }
            Err(err) => {
                out.push(format!(
                    "the {} certificate #{} is not valid DER X.509: {err}",
                    role_name(role),
                    i + 1
                ));
                return out;
            }
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        // The certificate that signed this one, when it is in the path.
        let issuer = match nodes.get(i + 1) {
            Some(issuer) => Some(issuer),
            None if node.self_issued() && self_signed(node.der) == Some(true) => Some(node),
            None => None,
        };
        certificate_rules(node, issuer, at, &mut out);
        if purpose == Purpose::Server {
            cabf_rules(node, &mut out);
        }
    }
    crl_rules(&nodes, crls, &mut out);
    out
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leaf => "leaf",
        Role::Intermediate => "intermediate",
        Role::Anchor => "trust anchor",
    }
}

fn label(role: Role, subject: &X509Name<'_>) -> String {
    let subject = dn::rfc4514(subject);
    if subject.is_empty() {
        format!("{} (empty subject)", role_name(role))
    } else {
        format!("{} `{subject}`", role_name(role))
    }
}

/// The RFC 5280 rules for one certificate.
fn certificate_rules(
    node: &Node<'_>,
    issuer: Option<&Node<'_>>,
    at: UnixTime,
    out: &mut Vec<String>,
) {
    let cert = &node.cert;
    let name = &node.label;
    let mut push = |rule: String| out.push(format!("{name}: {rule}"));

    // A trust anchor is the user's choice, not a product of validation;
    // RFC 5280 4.1.2.2 asks users to tolerate bad serial numbers, and
    // trusted roots with serial number 0 exist (Starfield Root G2).
    if node.role != Role::Anchor
        && let Some(problem) = serial_problem(cert.raw_serial())
    {
        push(format!("{problem} (RFC 5280 4.1.2.2)"));
    }
    if let Some((inner, outer)) = split_certificate(node.der)
        .and_then(|parts| Some((tbs_signature_algorithm(parts.tbs)?, parts.algorithm)))
        && inner != outer
    {
        push(
            "the signature algorithm inside the certificate differs from the one outside (RFC 5280 4.1.1.2)"
                .to_owned(),
        );
    }
    let version = cert.version();
    if !cert.extensions().is_empty() && version != X509Version::V3 {
        push(format!(
            "has extensions but is version {} (RFC 5280 4.1.2.1, 4.1.2.9)",
            version.0 + 1
        ));
    }
    let tbs = &cert.tbs_certificate;
    if (tbs.issuer_uid.is_some() || tbs.subject_uid.is_some()) && version == X509Version::V1 {
        push("has a unique identifier but is version 1 (RFC 5280 4.1.2.8)".to_owned());
    }
    if is_empty_name(cert.issuer()) {
        push("the issuer name is empty (RFC 5280 4.1.2.4)".to_owned());
    }
    let empty_subject = is_empty_name(cert.subject());
    if empty_subject && (node.issues() || node.is_ca()) {
        push("a CA certificate with an empty subject (RFC 5280 4.1.2.6)".to_owned());
    }
    let (not_before, not_after) = (cert.validity().not_before, cert.validity().not_after);
    let now = i64::try_from(at.as_secs()).unwrap_or(i64::MAX);
    if now < not_before.timestamp() || now > not_after.timestamp() {
        push(format!(
            "not valid at the validation time: valid from {} to {} (RFC 5280 6.1.3)",
            rfc3339(not_before.timestamp()),
            rfc3339(not_after.timestamp())
        ));
    }

    // Extensions in general.
    let mut seen = HashSet::new();
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if !seen.insert(oid) {
            push(format!(
                "the {} extension appears more than once (RFC 5280 4.2)",
                ext_name(&ext.oid)
            ));
        }
        if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
            push(format!(
                "the {} extension is malformed ({error}) (RFC 5280 4.2)",
                ext_name(&ext.oid)
            ));
        }
        if ext.critical && !PROCESSED.contains(&ext.oid) {
            push(format!(
                "the critical {} extension is not processed by this verifier (RFC 5280 4.2)",
                ext_name(&ext.oid)
            ));
        }
    }

    // Key identifiers.
    let ski = subject_key_identifier(cert);
    match authority_key_identifier(cert) {
        Some((critical, aki)) => {
            if critical {
                push(
                    "the authorityKeyIdentifier extension is critical (RFC 5280 4.2.1.1)"
                        .to_owned(),
                );
            }
            match &aki.key_identifier {
                None => push(
                    "the authorityKeyIdentifier has no keyIdentifier (RFC 5280 4.2.1.1)".to_owned(),
                ),
                Some(key_id) => {
                    if let Some(issuer_ski) = issuer.and_then(|i| subject_key_identifier(&i.cert))
                        && key_id.0 != issuer_ski.1
                    {
                        push(format!(
                            "the authorityKeyIdentifier {} is not the subjectKeyIdentifier {} of its issuer {} (RFC 5280 4.2.1.2)",
                            hex::encode(key_id.0),
                            hex::encode(issuer_ski.1),
                            issuer.map_or("", |i| i.label.as_str())
                        ));
                    }
                }
            }
        }
        None => {
            let self_signed_exempt = node.self_issued() && self_signed(node.der) != Some(false);
            if !self_signed_exempt {
                push(
                    "no authorityKeyIdentifier, which every certificate but a self-signed one needs (RFC 5280 4.2.1.1)"
                        .to_owned(),
                );
            }
        }
    }
    match ski {
        Some((true, _)) => {
            push("the subjectKeyIdentifier extension is critical (RFC 5280 4.2.1.2)".to_owned())
        }
        None if node.issues() || node.is_ca() => {
            push("a CA certificate without subjectKeyIdentifier (RFC 5280 4.2.1.2)".to_owned())
        }
        _ => {}
    }

    // Basic constraints and key usage.
    let bc = basic_constraints(cert);
    let ku = key_usage(cert);
    let is_ca = bc.is_some_and(|(_, bc)| bc.ca);
    match bc {
        None if node.issues() => push(
            "issues a certificate of the path but has no basicConstraints (RFC 5280 4.2.1.9)"
                .to_owned(),
        ),
        Some((_, bc)) if node.issues() && !bc.ca => push(
            "issues a certificate of the path but basicConstraints does not assert cA (RFC 5280 4.2.1.9)"
                .to_owned(),
        ),
        _ => {}
    }
    if let Some((critical, bc)) = bc {
        if bc.ca && !critical {
            push("basicConstraints asserts cA but is not critical (RFC 5280 4.2.1.9)".to_owned());
        }
        if bc.path_len_constraint.is_some()
            && (!bc.ca || ku.is_some_and(|(_, ku)| !ku.key_cert_sign()))
        {
            push("pathLenConstraint without cA and keyCertSign (RFC 5280 4.2.1.9)".to_owned());
        }
    }
    if let Some((_, ku)) = ku {
        if ku.flags == 0 {
            push("keyUsage has no bit set (RFC 5280 4.2.1.3)".to_owned());
        }
        if ku.key_cert_sign() && !is_ca {
            push("keyUsage asserts keyCertSign but basicConstraints does not assert cA (RFC 5280 4.2.1.3, 4.2.1.9)".to_owned());
        }
        if node.issues() && !ku.key_cert_sign() {
            push("issues a certificate of the path but keyUsage does not assert keyCertSign (RFC 5280 4.2.1.3, 6.1.4 (n))".to_owned());
        }
        if node.role == Role::Leaf && !ku.digital_signature() {
            push("keyUsage does not assert digitalSignature, so the key cannot sign a TLS handshake (RFC 8446 4.4.2.2)".to_owned());
        }
    }

    // Names.
    match subject_alt_name(cert) {
        Some((critical, san)) => {
            if empty_subject && !critical {
                push("the subject is empty but subjectAltName is not critical (RFC 5280 4.1.2.6, 4.2.1.6)".to_owned());
            }
            if san.general_names.is_empty() {
                push("subjectAltName has no entry (RFC 5280 4.2.1.6)".to_owned());
            }
            for general_name in &san.general_names {
                if let Some(problem) = san_entry_problem(general_name) {
                    push(format!("subjectAltName {problem} (RFC 5280 4.2.1.6)"));
                }
            }
        }
        None if empty_subject => push(
            "the subject is empty and there is no subjectAltName (RFC 5280 4.1.2.6)".to_owned(),
        ),
        None => {}
    }
    if let Some((critical, nc)) = name_constraints(cert) {
        if !is_ca {
            push(
                "nameConstraints in a certificate that is not a CA (RFC 5280 4.2.1.10)".to_owned(),
            );
        }
        if !critical {
            push("nameConstraints is not critical (RFC 5280 4.2.1.10)".to_owned());
        }
        if nc.permitted_subtrees.is_none() && nc.excluded_subtrees.is_none() {
            push("nameConstraints has neither permittedSubtrees nor excludedSubtrees (RFC 5280 4.2.1.10)".to_owned());
        }
        let subtrees = nc
            .permitted_subtrees
            .iter()
            .chain(&nc.excluded_subtrees)
            .flatten();
        for subtree in subtrees {
            if let Some(problem) = constraint_problem(&subtree.base) {
                push(format!("nameConstraints {problem} (RFC 5280 4.2.1.10)"));
            }
        }
    }

    // Policies and extended key usage.
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::PolicyConstraints(pc) => {
                if !ext.critical {
                    push("policyConstraints is not critical (RFC 5280 4.2.1.11)".to_owned());
                }
                if pc.require_explicit_policy.is_none() && pc.inhibit_policy_mapping.is_none() {
                    push("policyConstraints is empty (RFC 5280 4.2.1.11)".to_owned());
                }
            }
            ParsedExtension::InhibitAnyPolicy(_) if !ext.critical => {
                push("inhibitAnyPolicy is not critical (RFC 5280 4.2.1.14)".to_owned());
            }
            ParsedExtension::ExtendedKeyUsage(eku) if eku_is_empty(eku) => {
                push("extKeyUsage lists no purpose (RFC 5280 4.2.1.12)".to_owned());
            }
            _ => {}
        }
    }
}

/// The CA/Browser Forum Baseline Requirements rules strict mode applies to
/// TLS server chains.
fn cabf_rules(node: &Node<'_>, out: &mut Vec<String>) {
    let cert = &node.cert;
    let name = &node.label;
    let mut push = |rule: String| out.push(format!("{name}: {rule}"));

    if let Some(problem) = key_problem(cert.public_key()) {
        push(format!("{problem} (CABF BR 6.1.5, 7.1.3.1)"));
    }
    match node.role {
        Role::Leaf => {
            let san = subject_alt_name(cert);
            let common_names: Vec<_> = cert.subject().iter_common_name().collect();
            if common_names.len() > 1 {
                push("the subject has more than one commonName (CABF BR 7.1.4.3)".to_owned());
            }
            for cn in common_names {
                let Ok(value) = cn.as_str() else {
                    push("the commonName is not a string (CABF BR 7.1.4.3)".to_owned());
                    continue;
                };
                let names = san
                    .map(|(_, san)| san.general_names.as_slice())
                    .unwrap_or_default();
                if !names.iter().any(|entry| cn_copies(value, entry)) {
                    push(format!(
                        "the commonName `{}` is not a character-for-character copy of a subjectAltName entry (CABF BR 7.1.4.3)",
                        value.escape_debug()
                    ));
                }
            }
            if let Some((true, _)) = san
                && !is_empty_name(cert.subject())
            {
                push("subjectAltName is critical although the subject is not empty (CABF BR 7.1.2.7.12)".to_owned());
            }
            for ext in cert.extensions() {
                if let ParsedExtension::ExtendedKeyUsage(eku) = ext.parsed_extension() {
                    if ext.critical {
                        push("extKeyUsage is critical (CABF BR 7.1.2.7.6)".to_owned());
                    }
                    if eku.any {
                        push(
                            "extKeyUsage contains anyExtendedKeyUsage (CABF BR 7.1.2.7.10)"
                                .to_owned(),
                        );
                    }
                }
            }
        }
        Role::Anchor if node.self_issued() => {
            if cert
                .extensions()
                .iter()
                .any(|ext| ext.oid == OID_X509_EXT_EXTENDED_KEY_USAGE)
            {
                push("a root with extKeyUsage (CABF BR 7.1.2.1.2)".to_owned());
            }
            if let Some((_, aki)) = authority_key_identifier(cert) {
                if aki.authority_cert_issuer.is_some() {
                    push("a root whose authorityKeyIdentifier has authorityCertIssuer (CABF BR 7.1.2.1.3)".to_owned());
                }
                if aki.authority_cert_serial.is_some() {
                    push("a root whose authorityKeyIdentifier has authorityCertSerialNumber (CABF BR 7.1.2.1.3)".to_owned());
                }
            }
        }
        _ => {}
    }
}

/// The CRL profile rules for every CRL issued by a CA of the path.
fn crl_rules(
    nodes: &[Node<'_>],
    crls: &[(CertificateRevocationList<'_>, &[u8])],
    out: &mut Vec<String>,
) {
    for (crl, der) in crls {
        let issuer_name = crl.issuer().as_raw();
        // Only CRLs that speak for a certificate of the path (rustls-webpki
        // consults them for every certificate below the trust anchor).
        let relevant = nodes
            .iter()
            .filter(|node| node.role != Role::Anchor)
            .any(|node| node.cert.issuer().as_raw() == issuer_name);
        if !relevant {
            continue;
        }
        let signer = nodes
            .iter()
            .find(|node| node.cert.subject().as_raw() == issuer_name);
        let subject = dn::rfc4514(crl.issuer());
        let name = format!("CRL from `{subject}`");
        let mut push = |rule: String| out.push(format!("{name}: {rule}"));

        if crl.tbs_cert_list.version != Some(X509Version::V2) {
            push("is not version 2 (RFC 5280 5.1.2.1)".to_owned());
        }
        if let Some((inner, outer)) = split_certificate(der)
            .and_then(|parts| Some((tbs_crl_signature_algorithm(parts.tbs)?, parts.algorithm)))
            && inner != outer
        {
            push("the signature algorithm inside the CRL differs from the one outside (RFC 5280 5.1.1.2)".to_owned());
        }
        if crl.next_update().is_none() {
            push("has no nextUpdate (RFC 5280 5.1.2.5)".to_owned());
        }
        match crl
            .extensions()
            .iter()
            .find(|ext| ext.oid == OID_X509_EXT_CRL_NUMBER)
        {
            None => push("has no cRLNumber extension (RFC 5280 5.2.3)".to_owned()),
            Some(ext) if ext.critical => {
                push("the cRLNumber extension is critical (RFC 5280 5.2.3)".to_owned())
            }
            Some(_) => {}
        }
        let aki = crl
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => Some(aki),
                _ => None,
            });
        match aki.and_then(|aki| aki.key_identifier.as_ref()) {
            None => push(
                "has no authorityKeyIdentifier with a keyIdentifier (RFC 5280 5.2.1)".to_owned(),
            ),
            Some(key_id) => {
                if let Some((_, ski)) = signer.and_then(|s| subject_key_identifier(&s.cert))
                    && key_id.0 != ski
                {
                    push(format!(
                        "the authorityKeyIdentifier {} is not the subjectKeyIdentifier {} of the issuer (RFC 5280 4.2.1.2, 5.2.1)",
                        hex::encode(key_id.0),
                        hex::encode(ski)
                    ));
                }
            }
        }
        if let Some(signer) = signer
            && let Some((_, ku)) = key_usage(&signer.cert)
            && !ku.crl_sign()
        {
            push(format!(
                "its issuer {} has a keyUsage without cRLSign (RFC 5280 4.2.1.3, 6.3.3 (f))",
                signer.label
            ));
        }
    }
}

/// Extensions rustls-webpki or strict mode process, so they may be critical.
const PROCESSED: &[Oid<'static>] = &[
    OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_SUBJECT_ALT_NAME,
    OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_NAME_CONSTRAINTS,
    OID_X509_EXT_CRL_DISTRIBUTION_POINTS,
    OID_X509_EXT_EXTENDED_KEY_USAGE,
    // Criticality has its own rule for these two.
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
];

fn ext_name(oid: &Oid<'_>) -> String {
    let known = [
        (
            &OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
            "authorityKeyIdentifier",
        ),
        (&OID_X509_EXT_SUBJECT_KEY_IDENTIFIER, "subjectKeyIdentifier"),
        (&OID_X509_EXT_KEY_USAGE, "keyUsage"),
        (&OID_X509_EXT_SUBJECT_ALT_NAME, "subjectAltName"),
        (&OID_X509_EXT_BASIC_CONSTRAINTS, "basicConstraints"),
        (&OID_X509_EXT_NAME_CONSTRAINTS, "nameConstraints"),
        (
            &OID_X509_EXT_CRL_DISTRIBUTION_POINTS,
            "cRLDistributionPoints",
        ),
        (&OID_X509_EXT_EXTENDED_KEY_USAGE, "extKeyUsage"),
        (&OID_X509_EXT_POLICY_CONSTRAINTS, "policyConstraints"),
        (&OID_X509_EXT_INHIBIT_ANY_POLICY, "inhibitAnyPolicy"),
    ];
    let dotted = oid.to_id_string();
    match known.iter().find(|(known, _)| *known == oid) {
        Some((_, name)) => name.to_string(),
        None => match dotted.as_str() {
            "1.3.6.1.5.5.7.1.1" => "authorityInfoAccess".to_owned(),
            "2.5.29.32" => "certificatePolicies".to_owned(),
            "2.5.29.33" => "policyMappings".to_owned(),
            _ => dotted,
        },
    }
}

/// The first extension with `oid`, with its parsed form.
fn find_ext<'c, 'a>(cert: &'c X509Certificate<'a>, oid: &Oid<'_>) -> Option<&'c X509Extension<'a>> {
    cert.extensions().iter().find(|ext| ext.oid == *oid)
}

fn basic_constraints<'c>(cert: &'c X509Certificate<'_>) -> Option<(bool, &'c BasicConstraints)> {
    let ext = find_ext(cert, &OID_X509_EXT_BASIC_CONSTRAINTS)?;
    match ext.parsed_extension() {
        ParsedExtension::BasicConstraints(bc) => Some((ext.critical, bc)),
        _ => None,
    }
}

fn key_usage<'c>(cert: &'c X509Certificate<'_>) -> Option<(bool, &'c KeyUsage)> {
    let ext = find_ext(cert, &OID_X509_EXT_KEY_USAGE)?;
    match ext.parsed_extension() {
        ParsedExtension::KeyUsage(ku) => Some((ext.critical, ku)),
        _ => None,
    }
}

fn subject_key_identifier<'a>(cert: &X509Certificate<'a>) -> Option<(bool, &'a [u8])> {
    let ext = find_ext(cert, &OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)?;
    match ext.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(ski) => Some((ext.critical, ski.0)),
        _ => None,
    }
}

fn authority_key_identifier<'c, 'a>(
    cert: &'c X509Certificate<'a>,
) -> Option<(bool, &'c AuthorityKeyIdentifier<'a>)> {
    let ext = find_ext(cert, &OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)?;
    match ext.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(aki) => Some((ext.critical, aki)),
        _ => None,
    }
}

fn subject_alt_name<'c, 'a>(
    cert: &'c X509Certificate<'a>,
) -> Option<(bool, &'c SubjectAlternativeName<'a>)> {
    let ext = find_ext(cert, &OID_X509_EXT_SUBJECT_ALT_NAME)?;
    match ext.parsed_extension() {
        ParsedExtension::SubjectAlternativeName(san) => Some((ext.critical, san)),
        _ => None,
    }
}

fn name_constraints<'c, 'a>(
    cert: &'c X509Certificate<'a>,
) -> Option<(bool, &'c NameConstraints<'a>)> {
    let ext = find_ext(cert, &OID_X509_EXT_NAME_CONSTRAINTS)?;
    match ext.parsed_extension() {
        ParsedExtension::NameConstraints(nc) => Some((ext.critical, nc)),
        _ => None,
    }
}

fn eku_is_empty(eku: &ExtendedKeyUsage<'_>) -> bool {
    !(eku.any
        || eku.server_auth
        || eku.client_auth
        || eku.code_signing
        || eku.email_protection
        || eku.time_stamping
        || eku.ocsp_signing)
        && eku.other.is_empty()
}

fn is_empty_name(name: &X509Name<'_>) -> bool {
    name.iter_rdn().next().is_none()
}

/// What is wrong with a serial number's content octets, if anything.
fn serial_problem(raw: &[u8]) -> Option<String> {
    match raw {
        [] => Some("the serial number is empty".to_owned()),
        [first, ..] if first & 0x80 != 0 => Some("the serial number is negative".to_owned()),
        _ if raw.iter().all(|b| *b == 0) => Some("the serial number is zero".to_owned()),
        _ if raw.len() > 20 => Some(format!(
            "the serial number is {} octets long, more than 20",
            raw.len()
        )),
        _ => None,
    }
}

/// The three parts of a signed structure (certificate or CRL), as DER.
struct Signed<'a> {
    /// The whole to-be-signed element.
    tbs: &'a [u8],
    /// The whole outer AlgorithmIdentifier element.
    algorithm: &'a [u8],
    /// The signature's BIT STRING content without the unused-bits octet.
    signature: &'a [u8],
}

fn split_certificate(der: &[u8]) -> Option<Signed<'_>> {
    let outer = Tlv::read(der)?;
    let tbs = Tlv::read(outer.content)?;
    let algorithm = Tlv::read(tbs.rest)?;
    let signature = Tlv::read(algorithm.rest)?;
    let (&0, bits) = signature.content.split_first()? else {
        return None;
    };
    Some(Signed {
        tbs: tbs.element,
        algorithm: algorithm.element,
        signature: bits,
    })
}

/// The `signature` AlgorithmIdentifier inside a TBSCertificate.
fn tbs_signature_algorithm(tbs: &[u8]) -> Option<&[u8]> {
    let fields = Tlv::read(tbs)?.content;
    let mut field = Tlv::read(fields)?;
    if field.tag == 0xa0 {
        field = Tlv::read(field.rest)?; // version
    }
    Some(Tlv::read(field.rest)?.element) // after serialNumber
}

/// The `signature` AlgorithmIdentifier inside a TBSCertList.
fn tbs_crl_signature_algorithm(tbs: &[u8]) -> Option<&[u8]> {
    let fields = Tlv::read(tbs)?.content;
    let field = Tlv::read(fields)?;
    if field.tag == 0x02 {
        return Some(Tlv::read(field.rest)?.element); // after version
    }
    Some(field.element)
}

/// One DER element with a single-octet tag.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    element: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Tlv<'a> {
    fn read(input: &'a [u8]) -> Option<Self> {
        let (&tag, after_tag) = input.split_first()?;
        let (&first, mut after_len) = after_tag.split_first()?;
        let len = if first < 0x80 {
            first as usize
        } else {
            let count = (first & 0x7f) as usize;
            if count == 0 || count > 4 || after_len.len() < count {
                return None;
            }
            let (bytes, rest) = after_len.split_at(count);
            after_len = rest;
            bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize)
        };
        let header = input.len() - after_len.len();
        if after_len.len() < len {
            return None;
        }
        Some(Tlv {
            tag,
            content: &after_len[..len],
            element: &input[..header + len],
            rest: &after_len[len..],
        })
    }
}

/// Whether the certificate's signature verifies with its own key: `None`
/// when this cannot be decided (an algorithm rustls does not support).
fn self_signed(der: &[u8]) -> Option<bool> {
    let signed = split_certificate(der)?;
    let algorithm = Tlv::read(signed.algorithm)?.content;
    let owned = CertificateDer::from(der);
    let cert = webpki::EndEntityCert::try_from(&owned).ok()?;
    let algs = tls::provider().signature_verification_algorithms.all;
    let mut candidates = algs
        .iter()
        .filter(|alg| alg.signature_alg_id().as_ref() == algorithm)
        .peekable();
    candidates.peek()?;
    Some(candidates.any(|alg| {
        cert.verify_signature(*alg, signed.tbs, signed.signature)
            .is_ok()
    }))
}

/// What is wrong with a subjectAltName entry, if anything.
fn san_entry_problem(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(dns) => dns_problem(dns, true)
            .map(|problem| format!("dNSName `{}` {problem}", dns.escape_debug())),
        GeneralName::IPAddress(ip) if ip.len() != 4 && ip.len() != 16 => {
            Some(format!("iPAddress of {} octets, not 4 or 16", ip.len()))
        }
        GeneralName::RFC822Name(mailbox) => mailbox_problem(mailbox)
            .map(|problem| format!("rfc822Name `{}` {problem}", mailbox.escape_debug())),
        GeneralName::Invalid(tag, _) => Some(format!("entry with tag {} is malformed", tag.0)),
        _ => None,
    }
}

/// What is wrong with a name constraint's base, if anything.
fn constraint_problem(base: &GeneralName<'_>) -> Option<String> {
    match base {
        // An empty dNSName constraint stands for every DNS name.
        GeneralName::DNSName("") => None,
        GeneralName::DNSName(dns) if dns.starts_with('.') => Some(format!(
            "dNSName `{}` starts with a period, which only URI constraints allow",
            dns.escape_debug()
        )),
        GeneralName::DNSName(dns) => dns_problem(dns, false)
            .map(|problem| format!("dNSName `{}` {problem}", dns.escape_debug())),
        GeneralName::IPAddress(ip) if ip.len() != 8 && ip.len() != 32 => {
            Some(format!("iPAddress of {} octets, not 8 or 32", ip.len()))
        }
        GeneralName::Invalid(tag, _) => Some(format!("entry with tag {} is malformed", tag.0)),
        _ => None,
    }
}

/// Whether `name` is in the preferred name syntax of RFC 1034 3.5 as
/// relaxed by RFC 1123 2.1; a leftmost `*` label is allowed when `wildcard`.
fn dns_problem(name: &str, wildcard: bool) -> Option<&'static str> {
    if name.is_empty() || name == " " {
        return Some("is empty");
    }
    if name.len() > 253 {
        return Some("is longer than 253 characters");
    }
    for (i, label) in name.split('.').enumerate() {
        if i == 0 && wildcard && label == "*" {
            continue;
        }
        if label.is_empty() {
            return Some("has an empty label");
        }
        if label.len() > 63 {
            return Some("has a label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Some("has a character other than a letter, digit or hyphen");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("has a label that starts or ends with a hyphen");
        }
    }
    None
}

fn mailbox_problem(mailbox: &str) -> Option<&'static str> {
    if mailbox.contains('"') {
        return None; // a quoted local part may hold anything
    }
    match mailbox.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.contains('@') => {
            dns_problem(domain, false).map(|_| "has a domain that is not a DNS name")
        }
        _ => Some("is not a mailbox (local-part@domain)"),
    }
}

/// Whether a commonName value is a character-for-character copy of `entry`:
/// the dNSName itself, or an iPAddress in the text form RFC 3986 (IPv4)
/// or RFC 5952 (IPv6) prescribes.
fn cn_copies(value: &str, entry: &GeneralName<'_>) -> bool {
    match entry {
        GeneralName::DNSName(dns) => value == *dns,
        GeneralName::IPAddress(ip) => {
            let ip = match *ip {
                [a, b, c, d] => IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)),
                octets => match <[u8; 16]>::try_from(octets) {
                    Ok(octets) => IpAddr::V6(Ipv6Addr::from(octets)),
                    Err(_) => return false,
                },
            };
            // Rust writes IPv4 dotted-decimal without leading zeros and IPv6
            // in RFC 5952 form: lowercase, no leading zeros, `::` for the
            // first longest run of two or more zero groups.
            value == ip.to_string()
        }
        _ => false,
    }
}

/// A public key CABF BR 6.1.5 does not allow, if so.
fn key_problem(spki: &SubjectPublicKeyInfo<'_>) -> Option<String> {
    let algorithm = spki.algorithm.algorithm.to_id_string();
    match algorithm.as_str() {
        "1.2.840.113549.1.1.1" => {
            let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
                return Some("an RSA public key that cannot be decoded".to_owned());
            };
            let bits = unsigned_bits(rsa.modulus);
            if bits < 2048 {
                Some(format!("an RSA key of {bits} bits, fewer than 2048"))
            } else if !bits.is_multiple_of(8) {
                Some(format!("an RSA key of {bits} bits, not a multiple of 8"))
            } else {
                None
            }
        }
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|params| params.as_oid().ok())
                .map(|oid| oid.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7" | "1.3.132.0.34" | "1.3.132.0.35") => None,
                Some(other) => Some(format!(
                    "an EC key on curve {other}, not P-256, P-384 or P-521"
                )),
                None => Some("an EC key without a named curve".to_owned()),
            }
        }
        "1.2.840.10040.4.1" => Some("a DSA key".to_owned()),
        _ => None,
    }
}

/// The size in bits of a big-endian unsigned integer.
fn unsigned_bits(bytes: &[u8]) -> usize {
    let bytes = match bytes.iter().position(|b| *b != 0) {
        Some(start) => &bytes[start..],
        None => return 0,
    };
    bytes.len() * 8 - bytes[0].leading_zeros() as usize
}

fn rfc3339(secs: i64) -> String {
    crate::cert::unix_rfc3339(secs)
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
        DistinguishedName, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer,
        KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
        PKCS_ED25519, SanType, SerialNumber, SignatureAlgorithm,
    };

    use super::*;
    use crate::verify::{Verification, VerifyError};

    const BC: &[u64] = &[2, 5, 29, 19];
    const SKI: &[u64] = &[2, 5, 29, 14];
    const AKI: &[u64] = &[2, 5, 29, 35];
    const KU: &[u64] = &[2, 5, 29, 15];
    const SAN: &[u64] = &[2, 5, 29, 17];
    const NC: &[u64] = &[2, 5, 29, 30];
    const PC: &[u64] = &[2, 5, 29, 36];
    const INHIBIT_ANY: &[u64] = &[2, 5, 29, 54];
    const EKU: &[u64] = &[2, 5, 29, 37];
    const AIA: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
    /// DER of BasicConstraints { cA TRUE }.
    const CA_TRUE: &[u8] = &[0x30, 0x03, 0x01, 0x01, 0xff];

    fn key() -> KeyPair {
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
    }

    fn dn(common_name: &str) -> DistinguishedName {
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        name
    }

    fn ext(oid: &[u64], critical: bool, content: &[u8]) -> CustomExtension {
        let mut ext = CustomExtension::from_oid_content(oid, content.to_vec());
        ext.set_criticality(critical);
        ext
    }

    /// DER: one element with `tag` around `content`.
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend([0x81, len as u8]);
        } else {
            out.extend([0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    /// A conforming CA: critical cA, keyCertSign and cRLSign, SKI.
    fn ca_params(common_name: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.use_authority_key_identifier_extension = true;
        params
    }

    /// A conforming TLS leaf for `host`.
    fn leaf_params(host: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(host);
        params.subject_alt_names = vec![SanType::DnsName(host.try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params
    }

    /// A self-signed CA from `params`, and the issuer to sign with it.
    fn self_signed_ca(
        mut params: CertificateParams,
    ) -> (CertificateDer<'static>, Issuer<'static, KeyPair>) {
        params.use_authority_key_identifier_extension = false;
        let key = key();
        let cert = params.self_signed(&key).unwrap();
        (cert.der().clone(), Issuer::new(params, key))
    }

    fn new_root() -> (CertificateDer<'static>, Issuer<'static, KeyPair>) {
        self_signed_ca(ca_params("Test Root"))
    }

    fn sign(params: &CertificateParams, issuer: &Issuer<'_, KeyPair>) -> CertificateDer<'static> {
        sign_with(params, &key(), issuer)
    }

    fn sign_with(
        params: &CertificateParams,
        key: &KeyPair,
        issuer: &Issuer<'_, KeyPair>,
    ) -> CertificateDer<'static> {
        params.signed_by(key, issuer).unwrap().der().clone()
    }

    /// An intermediate CA signed by `issuer`, and the issuer it makes.
    fn intermediate(
        params: CertificateParams,
        issuer: &Issuer<'_, KeyPair>,
    ) -> (CertificateDer<'static>, Issuer<'static, KeyPair>) {
        let key = key();
        let der = sign_with(&params, &key, issuer);
        (der, Issuer::new(params, key))
    }

    /// The violations of the path `chain` (leaf first, anchor last).
    fn path(chain: &[&CertificateDer<'_>], purpose: Purpose) -> Vec<String> {
        let ders: Vec<&[u8]> = chain.iter().map(|der| der.as_ref()).collect();
        path_violations(&ders, &[], purpose, UnixTime::now())
    }

    #[track_caller]
    fn has(found: &[String], needle: &str) {
        assert!(
            found.iter().any(|v| v.contains(needle)),
            "no violation containing {needle:?} in {found:#?}"
        );
    }

    /// A leaf signed by a fresh conforming root, checked as a server path.
    fn leaf_violations(params: &CertificateParams) -> Vec<String> {
        let (root, issuer) = new_root();
        let leaf = sign(params, &issuer);
        path(&[&leaf, &root], Purpose::Server)
    }

    /// A root from `params` with a conforming leaf, checked as a server path.
    fn root_violations(params: CertificateParams) -> Vec<String> {
        let (root, issuer) = self_signed_ca(params);
        let leaf = sign(&leaf_params("example.com"), &issuer);
        path(&[&leaf, &root], Purpose::Server)
    }

    #[test]
    fn a_conforming_chain_has_no_violation() {
        let (root, root_issuer) = new_root();
        let (ica, ica_issuer) = intermediate(ca_params("Test ICA"), &root_issuer);
        let leaf = sign(&leaf_params("example.com"), &ica_issuer);
        for purpose in [Purpose::Server, Purpose::Client] {
            assert_eq!(path(&[&leaf, &ica, &root], purpose), Vec::<String>::new());
            let found = violations(
                &leaf,
                std::slice::from_ref(&ica),
                std::slice::from_ref(&root),
                &[],
                purpose,
                UnixTime::now(),
            );
            assert_eq!(found, Vec::<String>::new());
        }
    }

    #[test]
    fn serial_numbers_must_be_positive_and_at_most_20_octets() {
        assert_eq!(serial_problem(&[0x01]), None);
        assert_eq!(serial_problem(&[0x00, 0x80]), None);
        assert_eq!(serial_problem(&[0x7f; 20]), None);
        assert!(serial_problem(&[0x80]).unwrap().contains("negative"));
        assert!(serial_problem(&[0x00]).unwrap().contains("zero"));
        assert!(serial_problem(&[0x01; 21]).unwrap().contains("21 octets"));

        let mut params = leaf_params("example.com");
        params.serial_number = Some(SerialNumber::from_slice(&[0]));
        has(
            &leaf_violations(&params),
            "leaf `CN=example.com`: the serial number is zero (RFC 5280 4.1.2.2)",
        );
        params.serial_number = Some(SerialNumber::from_slice(&[0x11; 21]));
        has(
            &leaf_violations(&params),
            "the serial number is 21 octets long",
        );

        // Not held against the trust anchor (roots with serial 0 exist).
        let mut params = ca_params("Test Root");
        params.serial_number = Some(SerialNumber::from_slice(&[0]));
        assert_eq!(root_violations(params), Vec::<String>::new());
    }

    #[test]
    fn the_inner_and_outer_signature_algorithms_must_match() {
        let (root, issuer) = new_root();
        let leaf = sign(&leaf_params("example.com"), &issuer);
        let parts = split_certificate(&leaf).unwrap();
        assert_eq!(tbs_signature_algorithm(parts.tbs), Some(parts.algorithm));
        // ecdsa-with-SHA256 inside the TBS becomes ecdsa-with-SHA384.
        let oid = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let mut bytes = leaf.to_vec();
        let at = bytes.windows(oid.len()).position(|w| w == oid).unwrap();
        bytes[at + oid.len() - 1] = 0x03;
        let patched = CertificateDer::from(bytes);
        has(
            &path(&[&patched, &root], Purpose::Server),
            "the signature algorithm inside the certificate differs from the one outside (RFC 5280 4.1.1.2)",
        );
    }

    #[test]
    fn extensions_require_version_3() {
        let (root, issuer) = new_root();
        let leaf = sign(&leaf_params("example.com"), &issuer);
        // [0] { INTEGER 2 } becomes [0] { INTEGER 1 }: version 2.
        let mut bytes = leaf.to_vec();
        let at = bytes
            .windows(5)
            .position(|w| w == [0xa0, 0x03, 0x02, 0x01, 0x02])
            .unwrap();
        bytes[at + 4] = 0x01;
        let patched = CertificateDer::from(bytes);
        has(
            &path(&[&patched, &root], Purpose::Server),
            "has extensions but is version 2 (RFC 5280 4.1.2.1, 4.1.2.9)",
        );
    }

    #[test]
    fn names_must_not_be_empty_where_rfc_5280_requires_them() {
        // A CA with an empty subject, so its leaf has an empty issuer.
        let mut params = ca_params("");
        params.distinguished_name = DistinguishedName::new();
        let found = root_violations(params);
        has(
            &found,
            "trust anchor (empty subject): a CA certificate with an empty subject (RFC 5280 4.1.2.6)",
        );
        has(
            &found,
            "leaf `CN=example.com`: the issuer name is empty (RFC 5280 4.1.2.4)",
        );

        // An empty subject needs a critical subjectAltName.
        let mut params = leaf_params("example.com");
        params.distinguished_name = DistinguishedName::new();
        assert_eq!(
            leaf_violations(&params),
            Vec::<String>::new(),
            "rcgen marks it critical"
        );
        params.subject_alt_names.clear();
        params.custom_extensions = vec![ext(SAN, false, &der(0x30, &der(0x82, b"example.com")))];
        has(
            &leaf_violations(&params),
            "leaf (empty subject): the subject is empty but subjectAltName is not critical",
        );
        params.custom_extensions.clear();
        has(
            &leaf_violations(&params),
            "the subject is empty and there is no subjectAltName",
        );
    }

    #[test]
    fn every_certificate_must_be_valid_at_the_validation_time() {
        let mut params = ca_params("Old Root");
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
        params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        has(
            &root_violations(params),
            "trust anchor `CN=Old Root`: not valid at the validation time",
        );
    }

    #[test]
    fn extensions_must_be_unique_well_formed_and_understood_when_critical() {
        let mut params = leaf_params("example.com");
        params.custom_extensions = vec![ext(KU, false, &[0x03, 0x02, 0x07, 0x80])];
        has(
            &leaf_violations(&params),
            "the keyUsage extension appears more than once (RFC 5280 4.2)",
        );

        let mut params = leaf_params("example.com");
        params.custom_extensions = vec![ext(AIA, false, b"malformed")];
        has(
            &leaf_violations(&params),
            "the authorityInfoAccess extension is malformed",
        );

        let mut params = ca_params("Test Root");
        params.custom_extensions =
            vec![ext(&[1, 3, 6, 1, 4, 1, 55738, 666, 1], true, &[0x05, 0x00])];
        has(
            &root_violations(params),
            "trust anchor `CN=Test Root`: the critical 1.3.6.1.4.1.55738.666.1 extension is not processed",
        );
    }

    #[test]
    fn authority_key_identifiers_are_required_non_critical_and_must_match() {
        let mut params = leaf_params("example.com");
        params.use_authority_key_identifier_extension = false;
        has(
            &leaf_violations(&params),
            "leaf `CN=example.com`: no authorityKeyIdentifier, which every certificate but a self-signed one needs (RFC 5280 4.2.1.1)",
        );

        // Critical, or without keyIdentifier, or naming another key.
        let (root, issuer) = new_root();
        let root_ski = subject_key_identifier(&X509Certificate::from_der(&root).unwrap().1)
            .unwrap()
            .1
            .to_vec();
        let aki = |content: &[u8], critical: bool| {
            let mut params = leaf_params("example.com");
            params.use_authority_key_identifier_extension = false;
            params.custom_extensions = vec![ext(AKI, critical, &der(0x30, content))];
            path(&[&sign(&params, &issuer), &root], Purpose::Server)
        };
        assert_eq!(aki(&der(0x80, &root_ski), false), Vec::<String>::new());
        has(
            &aki(&der(0x80, &root_ski), true),
            "the authorityKeyIdentifier extension is critical (RFC 5280 4.2.1.1)",
        );
        has(
            &aki(&der(0x82, &[0x01]), false),
            "the authorityKeyIdentifier has no keyIdentifier (RFC 5280 4.2.1.1)",
        );
        has(
            &aki(&der(0x80, &[0xab; 20]), false),
            "is not the subjectKeyIdentifier",
        );

        // A self-signed root may omit it, a cross-signed one may not.
        assert_eq!(
            root_violations(ca_params("Test Root")),
            Vec::<String>::new()
        );
        let (other_root, other_issuer) = new_root();
        let mut params = ca_params("Cross-signed");
        params.use_authority_key_identifier_extension = false;
        let (cross, cross_issuer) = intermediate(params, &other_issuer);
        let leaf = sign(&leaf_params("example.com"), &cross_issuer);
        has(
            &path(&[&leaf, &cross], Purpose::Server),
            "trust anchor `CN=Cross-signed`: no authorityKeyIdentifier",
        );
        assert_eq!(
            path(&[&leaf, &cross, &other_root], Purpose::Server),
            vec![
                "intermediate `CN=Cross-signed`: no authorityKeyIdentifier, which every certificate but a self-signed one needs (RFC 5280 4.2.1.1)"
                    .to_owned()
            ]
        );

        // A self-signed root's own authorityKeyIdentifier must be its SKI.
        let mut params = ca_params("Test Root");
        params.custom_extensions = vec![ext(AKI, false, &der(0x30, &der(0x80, &[0xcd; 20])))];
        has(
            &root_violations(params),
            "trust anchor `CN=Test Root`: the authorityKeyIdentifier cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd is not the subjectKeyIdentifier",
        );
    }

    /// A CA whose extensions rcgen does not write: basicConstraints and SKI
    /// come from `custom` alone.
    fn bare_ca(custom: Vec<CustomExtension>) -> CertificateParams {
        let mut params = ca_params("Bare CA");
        params.is_ca = IsCa::NoCa;
        params.custom_extensions = custom;
        // What the leaves' authorityKeyIdentifier says, as `bare_ski()`.
        params.key_identifier_method = KeyIdMethod::PreSpecified(vec![0x42; 20]);
        params
    }

    #[test]
    fn subject_key_identifiers_are_required_in_cas_and_non_critical() {
        let ski = der(0x04, &[0x42; 20]);
        assert_eq!(
            root_violations(bare_ca(vec![ext(BC, true, CA_TRUE), ext(SKI, false, &ski)])),
            Vec::<String>::new()
        );
        has(
            &root_violations(bare_ca(vec![ext(BC, true, CA_TRUE)])),
            "trust anchor `CN=Bare CA`: a CA certificate without subjectKeyIdentifier (RFC 5280 4.2.1.2)",
        );
        has(
            &root_violations(bare_ca(vec![ext(BC, true, CA_TRUE), ext(SKI, true, &ski)])),
            "the subjectKeyIdentifier extension is critical (RFC 5280 4.2.1.2)",
        );
    }

    #[test]
    fn issuers_need_critical_basic_constraints_with_ca() {
        let ski = ext(SKI, false, &der(0x04, &[0x42; 20]));
        has(
            &root_violations(bare_ca(vec![ski.clone()])),
            "trust anchor `CN=Bare CA`: issues a certificate of the path but has no basicConstraints (RFC 5280 4.2.1.9)",
        );
        has(
            &root_violations(bare_ca(vec![ski.clone(), ext(BC, true, &[0x30, 0x00])])),
            "issues a certificate of the path but basicConstraints does not assert cA",
        );
        has(
            &root_violations(bare_ca(vec![ski.clone(), ext(BC, false, CA_TRUE)])),
            "basicConstraints asserts cA but is not critical (RFC 5280 4.2.1.9)",
        );
        // pathLenConstraint without cA.
        let mut params = leaf_params("example.com");
        params.is_ca = IsCa::NoCa;
        params.custom_extensions = vec![ext(BC, true, &[0x30, 0x03, 0x02, 0x01, 0x00])];
        has(
            &leaf_violations(&params),
            "pathLenConstraint without cA and keyCertSign (RFC 5280 4.2.1.9)",
        );
    }

    #[test]
    fn key_usage_must_fit_the_role() {
        // keyCertSign in a leaf that is not a CA.
        let mut params = leaf_params("example.com");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ];
        has(
            &leaf_violations(&params),
            "keyUsage asserts keyCertSign but basicConstraints does not assert cA",
        );
        // A TLS leaf must be able to sign.
        params.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
        has(
            &leaf_violations(&params),
            "keyUsage does not assert digitalSignature, so the key cannot sign a TLS handshake",
        );
        // An issuer must assert keyCertSign; a keyUsage must have a bit.
        let mut params = ca_params("Test Root");
        params.key_usages = vec![KeyUsagePurpose::CrlSign];
        has(
            &root_violations(params),
            "trust anchor `CN=Test Root`: issues a certificate of the path but keyUsage does not assert keyCertSign",
        );
        let mut params = ca_params("Test Root");
        params.key_usages.clear();
        params.custom_extensions = vec![ext(KU, false, &[0x03, 0x01, 0x00])];
        let found = root_violations(params);
        has(&found, "keyUsage has no bit set (RFC 5280 4.2.1.3)");
        // No keyUsage at all is allowed (RFC 5280 6.1.4 (n) checks it only when present).
        let mut params = ca_params("Test Root");
        params.key_usages.clear();
        assert_eq!(root_violations(params), Vec::<String>::new());
    }

    #[test]
    fn subject_alt_names_must_be_well_formed() {
        let mut params = leaf_params("example.com");
        params.custom_extensions = vec![ext(SAN, false, &[0x30, 0x00])];
        params.subject_alt_names.clear();
        has(
            &leaf_violations(&params),
            "subjectAltName has no entry (RFC 5280 4.2.1.6)",
        );

        for (name, problem) in [
            (
                "foo_bar.example.com",
                "has a character other than a letter, digit or hyphen",
            ),
            (
                "-foo.example.com",
                "has a label that starts or ends with a hyphen",
            ),
            ("foo..example.com", "has an empty label"),
            (
                "f*o.example.com",
                "has a character other than a letter, digit or hyphen",
            ),
        ] {
            let mut params = leaf_params("example.com");
            params
                .subject_alt_names
                .push(SanType::DnsName(name.try_into().unwrap()));
            has(
                &leaf_violations(&params),
                &format!("subjectAltName dNSName `{name}` {problem}"),
            );
        }
        let mut params = leaf_params("example.com");
        params
            .subject_alt_names
            .push(SanType::DnsName("*.example.com".try_into().unwrap()));
        params
            .subject_alt_names
            .push(SanType::Rfc822Name("user@example.com".try_into().unwrap()));
        assert_eq!(leaf_violations(&params), Vec::<String>::new());
        params.subject_alt_names.push(SanType::Rfc822Name(
            "bad@address@example.com".try_into().unwrap(),
        ));
        has(
            &leaf_violations(&params),
            "rfc822Name `bad@address@example.com` is not a mailbox",
        );

        let mut params = leaf_params("example.com");
        params.subject_alt_names.clear();
        let entries = [der(0x82, b"example.com"), der(0x87, &[1, 2, 3])].concat();
        params.custom_extensions = vec![ext(SAN, false, &der(0x30, &entries))];
        has(
            &leaf_violations(&params),
            "subjectAltName iPAddress of 3 octets, not 4 or 16",
        );
    }

    #[test]
    fn name_constraints_only_in_cas_critical_and_well_formed() {
        let permit = |base: &str| rcgen::NameConstraints {
            permitted_subtrees: vec![GeneralSubtree::DnsName(base.to_owned())],
            excluded_subtrees: Vec::new(),
        };
        let mut params = ca_params("Test Root");
        params.name_constraints = Some(permit("example.com"));
        assert_eq!(root_violations(params), Vec::<String>::new());

        let mut params = ca_params("Test Root");
        params.name_constraints = Some(permit(".example.com"));
        has(
            &root_violations(params),
            "nameConstraints dNSName `.example.com` starts with a period, which only URI constraints allow (RFC 5280 4.2.1.10)",
        );

        let subtree = der(0xa0, &der(0x30, &der(0x82, b"example.com")));
        let mut params = ca_params("Test Root");
        params.custom_extensions = vec![ext(NC, false, &der(0x30, &subtree))];
        has(
            &root_violations(params),
            "trust anchor `CN=Test Root`: nameConstraints is not critical (RFC 5280 4.2.1.10)",
        );

        let mut params = ca_params("Test Root");
        params.custom_extensions = vec![ext(NC, true, &[0x30, 0x00])];
        has(
            &root_violations(params),
            "nameConstraints has neither permittedSubtrees nor excludedSubtrees",
        );

        let ip = der(0xa0, &der(0x30, &der(0x87, &[10, 0, 0, 0])));
        let mut params = ca_params("Test Root");
        params.custom_extensions = vec![ext(NC, true, &der(0x30, &ip))];
        has(
            &root_violations(params),
            "nameConstraints iPAddress of 4 octets, not 8 or 32",
        );

        let mut params = leaf_params("example.com");
        params.name_constraints = Some(permit("example.com"));
        has(
            &leaf_violations(&params),
            "leaf `CN=example.com`: nameConstraints in a certificate that is not a CA (RFC 5280 4.2.1.10)",
        );
    }

    #[test]
    fn policy_extensions_must_be_critical_and_eku_not_empty() {
        let mut params = ca_params("Test Root");
        params.custom_extensions = vec![
            ext(PC, false, &[0x30, 0x03, 0x80, 0x01, 0x00]),
            ext(INHIBIT_ANY, false, &[0x02, 0x01, 0x00]),
        ];
        let found = root_violations(params);
        has(
            &found,
            "policyConstraints is not critical (RFC 5280 4.2.1.11)",
        );
        has(
            &found,
            "inhibitAnyPolicy is not critical (RFC 5280 4.2.1.14)",
        );
        // Critical is right, but no processing of policies here: then the
        // extensions count as unknown critical ones.
        let mut params = ca_params("Test Root");
        params.custom_extensions = vec![ext(PC, true, &[0x30, 0x00])];
        let found = root_violations(params);
        has(&found, "policyConstraints is empty (RFC 5280 4.2.1.11)");

        let mut params = leaf_params("example.com");
        params.extended_key_usages.clear();
        params.custom_extensions = vec![ext(EKU, false, &[0x30, 0x00])];
        let found = leaf_violations(&params);
        assert!(
            found
                .iter()
                .any(|v| v.contains("extKeyUsage lists no purpose")
                    || v.contains("extKeyUsage extension is malformed")),
            "{found:#?}"
        );
    }

    /// A CRL with the given fields from the issuer named `issuer` (DER
    /// Name); its signature is a placeholder, only its fields matter here.
    fn hand_crl(
        version: bool,
        next_update: bool,
        number: Option<bool>,
        key_id: Option<&[u8]>,
        issuer: &[u8],
    ) -> Vec<u8> {
        let alg = der(
            0x30,
            &der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
        );
        let mut extensions = Vec::new();
        if let Some(critical) = number {
            let flag = if critical {
                der(0x01, &[0xff])
            } else {
                Vec::new()
            };
            let number = [
                der(0x06, &[0x55, 0x1d, 0x14]),
                flag,
                der(0x04, &der(0x02, &[1])),
            ];
            extensions.extend(der(0x30, &number.concat()));
        }
        if let Some(key_id) = key_id {
            let aki = [
                der(0x06, &[0x55, 0x1d, 0x23]),
                der(0x04, &der(0x30, &der(0x80, key_id))),
            ];
            extensions.extend(der(0x30, &aki.concat()));
        }
        let mut tbs = Vec::new();
        if version {
            tbs.extend(der(0x02, &[1]));
        }
        tbs.extend(&alg);
        tbs.extend(issuer);
        tbs.extend(der(0x17, b"240101000000Z"));
        if next_update {
            tbs.extend(der(0x17, b"490101000000Z"));
        }
        if !extensions.is_empty() {
            tbs.extend(der(0xa0, &der(0x30, &extensions)));
        }
        der(0x30, &[der(0x30, &tbs), alg, der(0x03, &[0, 0])].concat())
    }

    /// The violations of leaf -> root with `crl`.
    fn crl_violations(leaf: &[u8], root: &[u8], crl: &[u8]) -> Vec<String> {
        let parsed = CertificateRevocationList::from_der(crl).unwrap().1;
        path_violations(
            &[leaf, root],
            &[(parsed, crl)],
            Purpose::Server,
            UnixTime::now(),
        )
    }

    /// The subject (DER) and subjectKeyIdentifier of a certificate.
    fn subject_and_ski(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let cert = X509Certificate::from_der(der).unwrap().1;
        let ski = subject_key_identifier(&cert).unwrap().1.to_vec();
        (cert.subject().as_raw().to_vec(), ski)
    }

    #[test]
    fn crls_of_the_path_must_follow_the_crl_profile() {
        let (root, issuer) = new_root();
        let leaf = sign(&leaf_params("example.com"), &issuer);
        let (name, ski) = subject_and_ski(&root);
        let check = |crl: Vec<u8>| crl_violations(&leaf, &root, &crl);

        // A CRL rcgen makes conforms, also for the whole verification.
        let params = CertificateRevocationListParams {
            this_update: time::OffsetDateTime::now_utc(),
            next_update: time::OffsetDateTime::now_utc() + time::Duration::days(1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&issuer).unwrap().der().clone();
        assert_eq!(check(crl.to_vec()), Vec::<String>::new());
        let found = violations(
            &leaf,
            &[],
            std::slice::from_ref(&root),
            &[crl],
            Purpose::Server,
            UnixTime::now(),
        );
        assert_eq!(found, Vec::<String>::new());

        assert_eq!(
            check(hand_crl(true, true, Some(false), Some(&ski), &name)),
            Vec::<String>::new()
        );
        has(
            &check(hand_crl(true, true, None, Some(&ski), &name)),
            "CRL from `CN=Test Root`: has no cRLNumber extension (RFC 5280 5.2.3)",
        );
        has(
            &check(hand_crl(true, true, Some(true), Some(&ski), &name)),
            "the cRLNumber extension is critical (RFC 5280 5.2.3)",
        );
        has(
            &check(hand_crl(true, true, Some(false), None, &name)),
            "has no authorityKeyIdentifier with a keyIdentifier (RFC 5280 5.2.1)",
        );
        has(
            &check(hand_crl(true, true, Some(false), Some(&[7; 20]), &name)),
            "is not the subjectKeyIdentifier",
        );
        has(
            &check(hand_crl(true, false, Some(false), Some(&ski), &name)),
            "has no nextUpdate (RFC 5280 5.1.2.5)",
        );
        has(
            &check(hand_crl(false, true, None, None, &name)),
            "is not version 2 (RFC 5280 5.1.2.1)",
        );
        // A CRL from an issuer outside the path is not looked at.
        let cn = [der(0x06, &[0x55, 0x04, 0x03]), der(0x0c, b"Stranger")].concat();
        let stranger = der(0x30, &der(0x31, &der(0x30, &cn)));
        assert_eq!(
            check(hand_crl(false, false, None, None, &stranger)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_issuer_of_a_crl_must_assert_crl_sign() {
        let mut params = ca_params("Test Root");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let (root, issuer) = self_signed_ca(params);
        let leaf = sign(&leaf_params("example.com"), &issuer);
        let (name, ski) = subject_and_ski(&root);
        has(
            &crl_violations(
                &leaf,
                &root,
                &hand_crl(true, true, Some(false), Some(&ski), &name),
            ),
            "CRL from `CN=Test Root`: its issuer trust anchor `CN=Test Root` has a keyUsage without cRLSign (RFC 5280 4.2.1.3, 6.3.3 (f))",
        );
    }

    #[test]
    fn tls_server_leaves_follow_the_baseline_requirements() {
        let mut params = leaf_params("example.com");
        params.distinguished_name = dn("other.example.com");
        has(
            &leaf_violations(&params),
            "leaf `CN=other.example.com`: the commonName `other.example.com` is not a character-for-character copy of a subjectAltName entry (CABF BR 7.1.4.3)",
        );
        params.distinguished_name = dn("Example.COM");
        has(
            &leaf_violations(&params),
            "the commonName `Example.COM` is not",
        );
        // Not for client certificates, which the Baseline Requirements do not cover.
        let (root, issuer) = new_root();
        let client = sign(&params, &issuer);
        assert_eq!(
            path(&[&client, &root], Purpose::Client),
            Vec::<String>::new()
        );

        // An IP address in the CN must be the canonical text of a SAN entry.
        let ip: IpAddr = "2001:db8::1:0:0:1".parse().unwrap();
        for (cn, ok) in [
            ("2001:db8::1:0:0:1", true),
            ("2001:db8:0:0:1:0:0:1", false),
            ("2001:DB8::1:0:0:1", false),
        ] {
            let mut params = leaf_params("example.com");
            params.subject_alt_names = vec![SanType::IpAddress(ip)];
            params.distinguished_name = dn(cn);
            assert_eq!(leaf_violations(&params).is_empty(), ok, "{cn}");
        }
        let mut params = leaf_params("example.com");
        params.subject_alt_names = vec![SanType::IpAddress("192.168.1.1".parse().unwrap())];
        params.distinguished_name = dn("192.168.001.001");
        has(
            &leaf_violations(&params),
            "the commonName `192.168.001.001` is not",
        );

        // One commonName at most.
        let mut params = leaf_params("example.com");
        params
            .distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 3]), "example.com");
        has(
            &leaf_violations(&params),
            "the subject has more than one commonName (CABF BR 7.1.4.3)",
        );

        // extKeyUsage: not critical, no anyExtendedKeyUsage.
        let mut params = leaf_params("example.com");
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::Any);
        has(
            &leaf_violations(&params),
            "extKeyUsage contains anyExtendedKeyUsage (CABF BR 7.1.2.7.10)",
        );
        let mut params = leaf_params("example.com");
        params.extended_key_usages.clear();
        params.custom_extensions = vec![ext(
            EKU,
            true,
            &der(0x30, &der(0x06, &[0x2b, 6, 1, 5, 5, 7, 3, 1])),
        )];
        has(
            &leaf_violations(&params),
            "extKeyUsage is critical (CABF BR 7.1.2.7.6)",
        );

        // A critical SAN only with an empty subject.
        let mut params = leaf_params("example.com");
        params.subject_alt_names.clear();
        params.custom_extensions = vec![ext(SAN, true, &der(0x30, &der(0x82, b"example.com")))];
        has(
            &leaf_violations(&params),
            "subjectAltName is critical although the subject is not empty (CABF BR 7.1.2.7.12)",
        );
    }

    #[test]
    fn roots_of_tls_server_chains_follow_the_baseline_requirements() {
        let mut params = ca_params("Test Root");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        has(
            &root_violations(params),
            "trust anchor `CN=Test Root`: a root with extKeyUsage (CABF BR 7.1.2.1.2)",
        );

        let mut params = ca_params("Test Root");
        params.use_authority_key_identifier_extension = false;
        let key = key();
        let ski = {
            let cert = params.self_signed(&key).unwrap();
            let parsed = X509Certificate::from_der(cert.der()).unwrap().1;
            subject_key_identifier(&parsed).unwrap().1.to_vec()
        };
        let aki = [
            der(0x80, &ski),
            der(0xa1, &der(0x82, b"x")),
            der(0x82, &[1]),
        ]
        .concat();
        params.custom_extensions = vec![ext(AKI, false, &der(0x30, &aki))];
        let cert = params.self_signed(&key).unwrap().der().clone();
        let issuer = Issuer::new(params, key);
        let leaf = sign(&leaf_params("example.com"), &issuer);
        let found = path(&[&leaf, &cert], Purpose::Server);
        has(
            &found,
            "a root whose authorityKeyIdentifier has authorityCertIssuer (CABF BR 7.1.2.1.3)",
        );
        has(
            &found,
            "a root whose authorityKeyIdentifier has authorityCertSerialNumber (CABF BR 7.1.2.1.3)",
        );
        assert_eq!(path(&[&leaf, &cert], Purpose::Client), Vec::<String>::new());
    }

    #[test]
    fn weak_or_unlisted_keys_are_refused_for_tls_servers() {
        let spki = |alg: Vec<u8>, key: Vec<u8>| {
            let mut bits = vec![0];
            bits.extend(key);
            der(0x30, &[der(0x30, &alg), der(0x03, &bits)].concat())
        };
        let rsa = |modulus: Vec<u8>| {
            let alg = [
                der(
                    0x06,
                    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
                ),
                der(0x05, &[]),
            ]
            .concat();
            spki(
                alg,
                der(0x30, &[der(0x02, &modulus), der(0x02, &[1, 0, 1])].concat()),
            )
        };
        let ec = |curve: &[u8]| {
            let alg = [
                der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
                der(0x06, curve),
            ]
            .concat();
            spki(alg, [vec![4], vec![1; 48]].concat())
        };
        let problem = |der: Vec<u8>| key_problem(&SubjectPublicKeyInfo::from_der(&der).unwrap().1);

        let modulus = |first: u8, len: usize| [vec![0, first], vec![0x55; len - 1]].concat();
        assert_eq!(problem(rsa(modulus(0x80, 256))), None);
        assert_eq!(
            problem(rsa(modulus(0x80, 128))).unwrap(),
            "an RSA key of 1024 bits, fewer than 2048"
        );
        assert_eq!(
            problem(rsa([vec![0x0f], vec![0x55; 256]].concat())).unwrap(),
            "an RSA key of 2052 bits, not a multiple of 8"
        );
        assert_eq!(
            problem(ec(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07])),
            None
        );
        assert_eq!(problem(ec(&[0x2b, 0x81, 0x04, 0x00, 0x22])), None);
        assert_eq!(
            problem(ec(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x01])).unwrap(),
            "an EC key on curve 1.2.840.10045.3.1.1, not P-256, P-384 or P-521"
        );
        let dsa = [
            der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01]),
            der(
                0x30,
                &[der(0x02, &[1]), der(0x02, &[1]), der(0x02, &[1])].concat(),
            ),
        ]
        .concat();
        assert_eq!(problem(spki(dsa, der(0x02, &[5]))).unwrap(), "a DSA key");

        // Real keys rcgen makes: P-256, P-384 and Ed25519 are fine.
        for alg in [
            &PKCS_ECDSA_P256_SHA256,
            &PKCS_ECDSA_P384_SHA384,
            &PKCS_ED25519,
        ] as [&SignatureAlgorithm; 3]
        {
            let (root, issuer) = new_root();
            let key = KeyPair::generate_for(alg).unwrap();
            let leaf = sign_with(&leaf_params("example.com"), &key, &issuer);
            assert_eq!(path(&[&leaf, &root], Purpose::Server), Vec::<String>::new());
        }
    }

    #[test]
    fn self_signed_is_decided_by_the_signature() {
        let (root, issuer) = new_root();
        let leaf = sign(&leaf_params("example.com"), &issuer);
        assert_eq!(self_signed(&root), Some(true));
        assert_eq!(self_signed(&leaf), Some(false));
    }

    #[test]
    fn junk_intermediates_are_ignored_and_a_conforming_path_wins() {
        let (root, root_issuer) = new_root();
        // A conforming ICA and a twin with the same name and key but no AKI.
        let ica_key = key();
        let good = sign_with(&ca_params("Test ICA"), &ica_key, &root_issuer);
        let mut twin_params = ca_params("Test ICA");
        twin_params.use_authority_key_identifier_extension = false;
        let twin = sign_with(&twin_params, &ica_key, &root_issuer);
        let ica_issuer = Issuer::new(ca_params("Test ICA"), ica_key);
        let leaf = sign(&leaf_params("example.com"), &ica_issuer);
        // Junk: an unrelated CA without SKI.
        let junk = sign(&bare_ca(vec![ext(BC, true, CA_TRUE)]), &root_issuer);
        let now = UnixTime::now();

        let found = violations(
            &leaf,
            &[junk.clone(), twin.clone(), good.clone()],
            std::slice::from_ref(&root),
            &[],
            Purpose::Server,
            now,
        );
        assert_eq!(found, Vec::<String>::new());
        // Only the twin: its violation is reported.
        let found = violations(&leaf, &[junk, twin], &[root], &[], Purpose::Server, now);
        assert_eq!(
            found,
            vec!["intermediate `CN=Test ICA`: no authorityKeyIdentifier, which every certificate but a self-signed one needs (RFC 5280 4.2.1.1)".to_owned()]
        );
    }

    #[test]
    fn verification_in_strict_mode_turns_violations_into_invalid() {
        let (root, issuer) = new_root();
        let mut params = leaf_params("example.com");
        params.use_authority_key_identifier_extension = false;
        let leaf = sign(&params, &issuer);
        let trusted = [root];
        let verification = |strict| Verification {
            trusted: &trusted,
            intermediates: &[],
            crls: &[],
            purpose: Purpose::Server,
            dns_name: Some("example.com"),
            at: UnixTime::now(),
            strict,
        };
        assert!(verification(false).run(&leaf).is_ok());
        match verification(true).run(&leaf) {
            Err(VerifyError::Invalid(reason)) => assert_eq!(
                reason,
                "strict: leaf `CN=example.com`: no authorityKeyIdentifier, which every certificate but a self-signed one needs (RFC 5280 4.2.1.1)"
            ),
            other => panic!("{other:?}"),
        }
    }
}
