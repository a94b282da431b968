//! The PROXY protocol header reader (`--proxy-protocol`), fed the first
//! bytes of a connection from memory: the header, then whatever follows
//! (in real life the TLS ClientHello).
//!
//! Asserts, beyond "never panics":
//! - an in-memory reader never leaves it waiting;
//! - it never reads past the header: an accepted v1 header is consumed
//!   up to and including its first CRLF, a v2 header is exactly its 16
//!   bytes plus the length they announce, and the bytes after it are left
//!   unread for rustls;
//! - refusals stay bounded: a bad v1 header costs at most 107 bytes, a
//!   missing header exactly the 12 looked at;
//! - a v2 `LOCAL` header never yields an address.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use mtls::proxy_protocol::{ProxyHeaderError, read_header};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fuzz_target!(|data: &[u8]| {
    let mut unread: &[u8] = data;
    let result = {
        let mut reading = pin!(read_header(&mut unread));
        match reading
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(result) => result,
            Poll::Pending => panic!("waiting on an in-memory reader"),
        }
    };
    let consumed = data.len() - unread.len();
    assert_eq!(unread, &data[consumed..]);

    let v2 = data.starts_with(V2_SIGNATURE);
    match result {
        Ok(address) => {
            if v2 {
                let length = u16::from_be_bytes([data[14], data[15]]) as usize;
                assert_eq!(consumed, 16 + length);
                if data[12] & 0x0F == 0 {
                    assert_eq!(address, None, "a LOCAL header gave an address");
                }
            } else {
                assert!(data.starts_with(b"PROXY "));
                let crlf = data
                    .windows(2)
                    .position(|pair| pair == b"\r\n")
                    .expect("an accepted v1 header ends in CRLF");
                assert_eq!(consumed, crlf + 2, "read past the v1 header's CRLF");
                assert!(consumed <= 107);
            }
        }
        Err(ProxyHeaderError::Missing) => {
            assert_eq!(consumed, 12);
            assert!(!v2 && !data.starts_with(b"PROXY "));
        }
        Err(ProxyHeaderError::Io(_)) => assert_eq!(consumed, data.len()),
        Err(ProxyHeaderError::Invalid(_)) => {
            if v2 {
                let length = u16::from_be_bytes([data[14], data[15]]) as usize;
                assert_eq!(consumed, 16 + length);
            } else {
                assert!(consumed <= 107);
            }
        }
    }
});
