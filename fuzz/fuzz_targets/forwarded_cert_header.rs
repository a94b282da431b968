//! The forwarded-certificate headers a trusted TLS terminator sends
//! (`--trust-forwarded-cert azure|xfcc|nginx`), decoded by
//! `ForwardedTrust::take` exactly as the server does for each request.
//!
//! Input: the first byte picks the format (and whether the header is sent
//! twice), the rest is the header value as it arrives off the wire.
//!
//! Asserts, beyond "never panics":
//! - the header is always removed from the request, whoever sent it;
//! - an untrusted peer's header is dropped (`Untrusted`), never decoded;
//! - a repeated header is refused;
//! - a decoded chain is non-empty, every certificate in it is non-empty
//!   DER, and that DER was really in the header: for `azure` the value is
//!   exactly its base64, for `xfcc` and `nginx` its base64 appears in the
//!   URL-decoded PEM (up to the last character, see below).
#![no_main]

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::HeaderMap;
use hyper::header::HeaderValue;
use libfuzzer_sys::fuzz_target;
use mtls::proxy::forwarded_cert::{Forwarded, ForwardedFormat, ForwardedTrust, parse_proxy};

const FORMATS: [ForwardedFormat; 3] = [
    ForwardedFormat::Azure,
    ForwardedFormat::Xfcc,
    ForwardedFormat::Nginx,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, value)) = data.split_first() else {
        return;
    };
    let format = FORMATS[usize::from(selector) % FORMATS.len()];
    let repeated = selector & 0x80 != 0;
    // hyper hands over only what HeaderValue accepts.
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    let trust = ForwardedTrust {
        format,
        proxies: vec![parse_proxy("10.0.0.0/8").unwrap()],
    };
    let request = || {
        let mut headers = HeaderMap::new();
        headers.append(format.header(), value.clone());
        if repeated {
            headers.append(format.header(), value.clone());
        }
        headers.insert("host", HeaderValue::from_static("example.test"));
        headers
    };

    let stranger: IpAddr = "192.0.2.1".parse().unwrap();
    let mut headers = request();
    let outcome = trust.take(&mut headers, stranger);
    assert!(matches!(outcome, Ok(Forwarded::Untrusted)), "{outcome:?}");
    assert!(!headers.contains_key(format.header()));
    assert!(headers.contains_key("host"));

    let proxy: IpAddr = "10.1.2.3".parse().unwrap();
    let mut headers = request();
    let outcome = trust.take(&mut headers, proxy);
    assert!(!headers.contains_key(format.header()));
    assert!(headers.contains_key("host"));
    let chain = match outcome {
        Ok(Forwarded::Chain(chain)) => chain,
        Ok(other) => panic!("a trusted proxy's header gave {other:?}"),
        Err(err) => {
            assert!(err.header == format.header().as_str(), "{err}");
            return;
        }
    };
    assert!(!repeated, "a repeated header was accepted");
    assert!(!chain.is_empty());
    let text = value.to_str().expect("a decoded header is ASCII");
    match format {
        ForwardedFormat::Azure => {
            assert_eq!(chain.len(), 1);
            assert!(!chain[0].is_empty(), "empty certificate from {text:?}");
            assert_eq!(STANDARD.encode(&chain[0]), text.trim());
        }
        ForwardedFormat::Xfcc | ForwardedFormat::Nginx => {
            // XFCC's `\` escapes undone first (harmless for nginx, whose
            // PEM has no backslashes), then the URL encoding.
            let unescaped = text.replace('\\', "");
            let decoded = percent_encoding::percent_decode_str(&unescaped).collect::<Vec<u8>>();
            // The base64 the PEM decoder sees: it keeps collecting across a
            // stray `-----BEGIN` line, and skips \t \n \x0B \x0C \r and space.
            let base64: Vec<u8> = decoded
                .split(|&b| b == b'\n' || b == b'\r')
                .filter(|line| !line.starts_with(b"-----"))
                .flatten()
                .copied()
                .filter(|b| !matches!(b, b'\t'..=b'\r' | b' '))
                .collect();
            let base64 = String::from_utf8_lossy(&base64);
            for der in &chain {
                assert!(!der.is_empty(), "empty certificate from {text:?}");
                // The PEM decoder accepts a missing `=` padding and
                // non-zero trailing bits, so the last character may differ.
                let der_base64 = STANDARD.encode(der);
                let exact = der_base64.trim_end_matches('=');
                let exact = &exact[..exact.len() - 1];
                assert!(base64.contains(exact), "{der_base64} is not in {text:?}");
            }
        }
    }
});
