//! HTTP Strict Transport Security (RFC 6797): every HTTPS answer tells the
//! browser to use HTTPS only for this host from now on.

use hyper::HeaderMap;
use hyper::header::{HeaderValue, STRICT_TRANSPORT_SECURITY};

/// One year, this host only. A year is what browsers' preload lists ask as
/// a minimum and what scanners accept; `includeSubDomains` is left to the
/// operator because a server cannot know that every subdomain has HTTPS.
pub const DEFAULT_HSTS: &str = "max-age=31536000";

#[derive(Debug, thiserror::Error)]
#[error(
    "--hsts / HSTS `{0}` is not a Strict-Transport-Security value; write e.g. `max-age=31536000` or `max-age=63072000; includeSubDomains`, or `off`"
)]
pub struct InvalidHsts(String);

/// The header value to send, or `None` for `off`.
pub fn parse(text: &str) -> Result<Option<HeaderValue>, InvalidHsts> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let has_max_age = text.split(';').any(|directive| {
        directive
            .trim()
            .split_once('=')
            .is_some_and(|(name, seconds)| {
                name.trim().eq_ignore_ascii_case("max-age")
                    && !seconds.trim().is_empty()
                    && seconds
                        .trim()
                        .trim_matches('"')
                        .bytes()
                        .all(|b| b.is_ascii_digit())
            })
    });
    if !has_max_age {
        return Err(InvalidHsts(text.to_owned()));
    }
    HeaderValue::from_str(text)
        .map(Some)
        .map_err(|_| InvalidHsts(text.to_owned()))
}

/// Adds the header unless the answer already has one (an upstream that sets
/// its own policy keeps it).
pub fn apply(headers: &mut HeaderMap, value: &HeaderValue) {
    headers
        .entry(STRICT_TRANSPORT_SECURITY)
        .or_insert_with(|| value.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_with_max_age_are_accepted_and_off_disables() {
        assert_eq!(parse(DEFAULT_HSTS).unwrap().unwrap(), "max-age=31536000");
        assert_eq!(
            parse("max-age=63072000; includeSubDomains; preload")
                .unwrap()
                .unwrap(),
            "max-age=63072000; includeSubDomains; preload"
        );
        assert_eq!(
            parse("includeSubDomains; Max-Age=\"0\"").unwrap().unwrap(),
            "includeSubDomains; Max-Age=\"0\""
        );
        assert!(parse("off").unwrap().is_none());
        assert!(parse("OFF").unwrap().is_none());
    }

    #[test]
    fn values_without_a_max_age_are_refused_with_the_flag_named() {
        for bad in [
            "",
            "includeSubDomains",
            "max-age=",
            "max-age=soon",
            "max-age=1;\u{1}x",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("--hsts / HSTS"), "{err}");
        }
    }

    #[test]
    fn an_existing_header_is_kept() {
        let ours = HeaderValue::from_static(DEFAULT_HSTS);
        let mut headers = HeaderMap::new();
        apply(&mut headers, &ours);
        assert_eq!(headers[STRICT_TRANSPORT_SECURITY], DEFAULT_HSTS);
        let mut upstream = HeaderMap::new();
        upstream.insert(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=60"),
        );
        apply(&mut upstream, &ours);
        assert_eq!(
            upstream.get_all(STRICT_TRANSPORT_SECURITY).iter().count(),
            1
        );
        assert_eq!(upstream[STRICT_TRANSPORT_SECURITY], "max-age=60");
    }
}
