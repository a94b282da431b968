//! Distinguished names as RFC 4514 strings.
//!
//! Attribute values come from certificates and are attacker-controlled, so
//! the escaping here is stricter than RFC 4514 requires: besides the special
//! characters, every control character is written as `\XX`, which keeps the
//! result a single printable line for headers, logs and JSON alike.

use std::fmt::Write;

use x509_parser::der_parser::asn1_rs::{FromDer, Header, Tag, ToDer};
use x509_parser::oid_registry::Oid;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// The RFC 4514 form: most specific RDN first, RDNs joined by `,`,
/// the attributes of a multi-valued RDN joined by `+`.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<&_> = name.iter_rdn().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(short_name(attr.attr_type()).as_deref().unwrap_or("?"));
            out.push('=');
            push_value(&mut out, attr);
        }
    }
    out
}

/// Whether x509-parser read all of `name`. It stops at the first RDN it
/// cannot decode and returns the ones before it as if they were the whole
/// name (whose raw bytes then end early); such a name must be neither shown
/// nor matched as if it were complete.
pub fn is_complete(name: &X509Name<'_>) -> bool {
    Header::from_der(name.as_raw()).is_ok_and(|(contents, header)| {
        header
            .length()
            .definite()
            .is_ok_and(|length| length == contents.len())
    })
}

/// The attributes in certificate order as (short name, decoded value),
/// unescaped: for sinks that escape on their own, such as JSON.
pub fn attributes(name: &X509Name<'_>) -> Vec<(String, String)> {
    name.iter_attributes()
        .map(|attr| {
            let kind = short_name(attr.attr_type()).unwrap_or_else(|| "?".to_owned());
            let value = decode_string(attr).unwrap_or_else(|| {
                let mut out = String::new();
                push_value(&mut out, attr);
                out
            });
            (kind, value)
        })
        .collect()
}

/// The first common name, escaped like any RFC 4514 value.
pub fn common_name(name: &X509Name<'_>) -> Option<String> {
    name.iter_common_name().next().map(|attr| {
        let mut out = String::new();
        push_value(&mut out, attr);
        out
    })
}

/// Short names for the attributes people meet in practice; any other type
/// is written as its dotted OID, as RFC 4514 prescribes.
fn short_name(oid: &Oid<'_>) -> Option<String> {
    let dotted = dotted_oid(oid);
    let known = match dotted.as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.5" => "serialNumber",
        "2.5.4.4" => "SN",
        "2.5.4.42" => "GN",
        "2.5.4.12" => "title",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return Some(dotted),
    };
    Some(known.to_owned())
}

/// The dotted form of an attribute type (`2.5.4.3`), or `?` when it has
/// none: x509-parser accepts an empty OBJECT IDENTIFIER (an empty string)
/// and one with an arc beyond 64 bits (its bytes in hex, with spaces),
/// and neither can stand before `=` in a name string.
pub fn dotted_oid(oid: &Oid<'_>) -> String {
    let dotted = oid.to_id_string();
    let numeric = !dotted.is_empty()
        && dotted
            .split('.')
            .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()));
    if numeric { dotted } else { "?".to_owned() }
}

fn push_value(out: &mut String, attr: &AttributeTypeAndValue<'_>) {
    match decode_string(attr) {
        Some(text) => escape_into(out, &text),
        // RFC 4514 section 2.4: a value of a type without a string form is
        // written as `#` and the hex of its BER encoding.
        None => {
            out.push('#');
            match attr.attr_value().to_der_vec() {
                Ok(der) => out.push_str(&hex::encode_upper(der)),
                Err(_) => out.push_str(&hex::encode_upper(attr.as_slice())),
            }
        }
    }
}

/// The string types certificates use, decoded to Unicode. Invalid encodings
/// are decoded lossily rather than rejected: a name must always be shown.
fn decode_string(attr: &AttributeTypeAndValue<'_>) -> Option<String> {
    let value = attr.attr_value();
    let data = value.data;
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString => {
            Some(String::from_utf8_lossy(data).into_owned())
        }
        // T.61 in practice carries Latin-1.
        Tag::T61String | Tag::VisibleString => Some(data.iter().map(|&b| b as char).collect()),
        Tag::BmpString => {
            let units = data
                .chunks(2)
                .map(|pair| u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
            Some(
                char::decode_utf16(units)
                    .map(|c| c.unwrap_or('\u{FFFD}'))
                    .collect(),
            )
        }
        Tag::UniversalString => Some(
            data.chunks(4)
                .map(|quad| {
                    let mut bytes = [0u8; 4];
                    bytes[..quad.len()].copy_from_slice(quad);
                    char::from_u32(u32::from_be_bytes(bytes)).unwrap_or('\u{FFFD}')
                })
                .collect(),
        ),
        _ => None,
    }
}

/// RFC 4514 section 2.4 escaping, plus `\XX` for every control character.
pub fn escape_into(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{byte:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(value: &str) -> String {
        let mut out = String::new();
        escape_into(&mut out, value);
        out
    }

    #[test]
    fn special_characters_are_escaped() {
        assert_eq!(escaped("a,b+c"), "a\\,b\\+c");
        assert_eq!(escaped("#lead"), "\\#lead");
        assert_eq!(escaped(" pad "), "\\ pad\\ ");
        assert_eq!(escaped("x=1;y<2>\"q\"\\"), "x=1\\;y\\<2\\>\\\"q\\\"\\\\");
    }

    #[test]
    fn control_characters_never_survive() {
        let out = escaped("evil\r\nSet-Cookie: x\0\u{7f}");
        assert_eq!(out, "evil\\0D\\0ASet-Cookie: x\\00\\7F");
        assert!(!out.chars().any(char::is_control));
    }

    /// Found by fuzz/fuzz_targets/dn_formatting.rs (input `00 71 c7 c7 1c
    /// 71 c7`, kept as fuzz/corpus/dn_formatting/regression_empty_oid: a
    /// certificate whose issuer, the name below, is one attribute whose
    /// type is an empty OBJECT IDENTIFIER), which was written `=`: a name
    /// string with no attribute type.
    #[test]
    fn a_type_without_a_dotted_form_is_written_as_a_question_mark() {
        use x509_parser::prelude::FromDer;
        let empty_oid = hex::decode("30083106300406000c00").unwrap();
        let (_, name) = X509Name::from_der(&empty_oid).unwrap();
        assert_eq!(rfc4514(&name), "?=");
        assert_eq!(attributes(&name), [("?".to_owned(), String::new())]);
        // 1.2 followed by an arc of 70 bits: x509-parser gives hex.
        let huge_arc = hex::decode("301431123010060b2aff8080808080808080000c0178").unwrap();
        let (_, name) = X509Name::from_der(&huge_arc).unwrap();
        assert_eq!(rfc4514(&name), "?=x");
        let unknown = hex::decode("300f310d300b06042a0304050c0378797a").unwrap();
        let (_, name) = X509Name::from_der(&unknown).unwrap();
        assert_eq!(rfc4514(&name), "1.2.3.4.5=xyz");
    }

    #[test]
    fn unicode_is_kept() {
        assert_eq!(escaped("Zürich 東京"), "Zürich 東京");
    }
}
