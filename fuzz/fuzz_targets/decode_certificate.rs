//! Everything `mtls inspect` and `/cert` do with untrusted bytes: sniffing
//! PEM / DER / PKCS#12, decoding every certificate into CertDetails, and the
//! common name used in logs. Must never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mtls::cert::{self, CertDetails};
use mtls::input;

fuzz_target!(|data: &[u8]| {
    let _ = CertDetails::from_der(data);
    let _ = cert::common_name(data);
    let password = || Some("fuzz".to_owned());
    if let Ok(certs) = input::certificates(Path::new("fuzz-input"), data, &password) {
        for der in certs {
            let _ = CertDetails::from_der(&der);
        }
    }
});
