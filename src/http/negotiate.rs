//! Content negotiation: HTML for browsers, JSON for everything else.

use hyper::HeaderMap;
use hyper::header::ACCEPT;

/// True when the client prefers `text/html` over `application/json`.
///
/// Only an explicit `text/html` counts, so `curl` (`*/*`) and API clients
/// keep getting JSON, while browsers (`text/html,...,*/*;q=0.8`) get pages.
pub fn prefers_html(headers: &HeaderMap) -> bool {
    let accepts = headers.get_all(ACCEPT);
    // Asked on every request: most clients never mention HTML at all.
    if !accepts.iter().any(|value| mentions_html(value.as_bytes())) {
        return false;
    }
    let mut html = 0.0f32;
    let mut json = 0.0f32;
    for value in accepts {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let is = |name: &str| media.eq_ignore_ascii_case(name);
            if is("text/html") || is("application/xhtml+xml") {
                html = html.max(q);
            } else if is("application/json") || is("application/*") || is("*/*") {
                json = json.max(q);
            }
        }
    }
    html > 0.0 && html > json
}

fn mentions_html(value: &[u8]) -> bool {
    value
        .windows(4)
        .any(|window| window.eq_ignore_ascii_case(b"html"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn with_accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn browsers_get_html() {
        let chrome =
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
        assert!(prefers_html(&with_accept(chrome)));
        let firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(prefers_html(&with_accept(firefox)));
    }

    #[test]
    fn media_types_are_case_insensitive() {
        assert!(prefers_html(&with_accept("TEXT/HTML")));
        assert!(!prefers_html(&with_accept("Text/Html;q=0.4, */*")));
    }

    #[test]
    fn api_clients_get_json() {
        assert!(!prefers_html(&HeaderMap::new()));
        assert!(!prefers_html(&with_accept("*/*")));
        assert!(!prefers_html(&with_accept("application/json")));
        assert!(!prefers_html(&with_accept(
            "text/html;q=0.5, application/json"
        )));
        assert!(!prefers_html(&with_accept("text/html;q=0")));
    }
}
