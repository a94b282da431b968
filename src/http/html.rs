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
        self.table(&details.rows())
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
