//! Self-contained HTML pages for people: no external assets, a little inline
//! CSS, readable on a phone. Every piece of text goes through `escape`,
//! because certificate fields and request headers are attacker-controlled.

use std::fmt::Write;

use crate::cert::CertDetails;

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:56rem;padding:1rem;color:#1b1b1b;background:#fafafa}\
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}\
table{border-collapse:collapse;width:100%;background:#fff}\
th,td{text-align:left;vertical-align:top;padding:.35rem .6rem;border-bottom:1px solid #e3e3e3;overflow-wrap:anywhere}\
th{width:12rem;font-weight:600;color:#444}\
pre{background:#fff;border:1px solid #e3e3e3;padding:.6rem;overflow-x:auto;font-size:.8rem}\
.ok{color:#176f2c}.bad{color:#a4161a}nav a{margin-right:1rem}";

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "&#xFFFD;");
            }
            c => out.push(c),
        }
    }
    out
}

/// A page under construction. Methods take plain text and escape it.
pub struct Page {
    body: String,
    title: String,
}

impl Page {
    pub fn new(title: &str) -> Self {
        let mut page = Page {
            body: String::new(),
            title: title.to_owned(),
        };
        page.body.push_str(
            "<nav><a href=\"/\">Welcome</a><a href=\"/cert\">Certificate</a><a href=\"/headers\">Headers</a></nav>",
        );
        let _ = write!(page.body, "<h1>{}</h1>", escape(title));
        page
    }

    pub fn heading(&mut self, text: &str) -> &mut Self {
        let _ = write!(self.body, "<h2>{}</h2>", escape(text));
        self
    }

    pub fn paragraph(&mut self, text: &str) -> &mut Self {
        let _ = write!(self.body, "<p>{}</p>", escape(text));
        self
    }

    /// A paragraph styled as good (`ok`) or bad (`bad`) news.
    pub fn status(&mut self, good: bool, text: &str) -> &mut Self {
        let class = if good { "ok" } else { "bad" };
        let _ = write!(self.body, "<p class=\"{class}\">{}</p>", escape(text));
        self
    }

    pub fn table<K: AsRef<str>, V: AsRef<str>>(&mut self, rows: &[(K, V)]) -> &mut Self {
        self.body.push_str("<table>");
        for (key, value) in rows {
            let _ = write!(
                self.body,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(key.as_ref()),
                escape(value.as_ref())
            );
        }
        self.body.push_str("</table>");
        self
    }

    pub fn preformatted(&mut self, text: &str) -> &mut Self {
        let _ = write!(self.body, "<pre>{}</pre>", escape(text));
        self
    }

    /// The fields of a certificate, as a table.
    pub fn certificate(&mut self, details: &CertDetails) -> &mut Self {
        self.table(&certificate_rows(details))
    }

    pub fn render(&self) -> String {
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body>{}</body></html>\n",
            escape(&self.title),
            self.body
        )
    }
}

/// The rows people read first, in the order `openssl x509 -text` uses.
pub fn certificate_rows(d: &CertDetails) -> Vec<(&'static str, String)> {
    let sans = &d.subject_alt_names;
    let mut rows = vec![
        ("Subject", d.subject.rfc4514.clone()),
        ("Issuer", d.issuer.rfc4514.clone()),
        ("Serial", d.serial.clone()),
        ("Version", d.version.to_string()),
        ("Valid from", d.not_before.clone()),
        ("Valid until", d.not_after.clone()),
        (
            "Valid now",
            format!(
                "{} (expires in {} days)",
                if d.valid_now { "yes" } else { "no" },
                d.expires_in_days
            ),
        ),
    ];
    let joined = |list: &[String]| list.join(", ");
    for (label, list) in [
        ("DNS names", &sans.dns),
        ("IP addresses", &sans.ip),
        ("URIs", &sans.uri),
        ("Emails", &sans.email),
    ] {
        if !list.is_empty() {
            rows.push((label, joined(list)));
        }
    }
    if let Some(spiffe) = &d.spiffe_id {
        rows.push(("SPIFFE ID", spiffe.clone()));
    }
    let key = &d.public_key;
    let mut key_text = key.algorithm.clone();
    if let Some(curve) = &key.curve {
        let _ = write!(key_text, " {curve}");
    } else if let Some(bits) = key.bits {
        let _ = write!(key_text, " {bits} bits");
    }
    rows.push(("Public key", key_text));
    rows.push(("Signature", d.signature_algorithm.clone()));
    if !d.key_usage.is_empty() {
        rows.push(("Key usage", d.key_usage.join(", ")));
    }
    if !d.extended_key_usage.is_empty() {
        rows.push(("Extended key usage", d.extended_key_usage.join(", ")));
    }
    if let Some(bc) = &d.basic_constraints {
        let mut text = format!("CA: {}", bc.ca);
        if let Some(len) = bc.path_len {
            let _ = write!(text, ", path length {len}");
        }
        rows.push(("Basic constraints", text));
    }
    if let Some(id) = &d.subject_key_id {
        rows.push(("Subject key ID", id.clone()));
    }
    if let Some(id) = &d.authority_key_id {
        rows.push(("Authority key ID", id.clone()));
    }
    if !d.crl_distribution_points.is_empty() {
        rows.push(("CRL distribution", d.crl_distribution_points.join(", ")));
    }
    for access in &d.authority_info_access {
        rows.push((
            "Authority info",
            format!("{} {}", access.method, access.location),
        ));
    }
    rows.push(("SHA-256 fingerprint", d.fingerprints.sha256.clone()));
    rows.push(("SHA-1 thumbprint", d.fingerprints.sha1.clone()));
    rows.push(("Self-signed", d.self_signed.to_string()));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_controls_are_neutralised() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(escape("a\r\nb\0"), "a&#xFFFD;\nb&#xFFFD;");
    }

    #[test]
    fn page_text_is_escaped() {
        let mut page = Page::new("<b>title</b>");
        page.table(&[("<k>", "<v>")]).paragraph("<p>");
        let html = page.render();
        assert!(!html.contains("<b>"));
        assert!(!html.contains("<k>"));
        assert!(html.contains("&lt;v&gt;"));
    }
}
