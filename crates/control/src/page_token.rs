//! Pagination and filters. Page tokens are opaque and tamper-checked: the
//! cursor and a fingerprint of the request they belong to, signed with
//! HMAC-SHA256, so a token can neither be forged nor reused with another filter.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{ControlError, ControlResult};

/// Page size when the request leaves it 0.
pub(crate) const PAGE_SIZE_DEFAULT: u64 = 50;
/// Largest page size; larger requests are clamped.
pub(crate) const PAGE_SIZE_MAX: u64 = 1000;

/// The key page tokens are signed with.
#[derive(Clone)]
pub struct PageTokenKey(Arc<Vec<u8>>);

impl PageTokenKey {
    /// A key from secret bytes (at least 32).
    pub fn new(key: Vec<u8>) -> Self {
        debug_assert!(key.len() >= 32, "page token keys need 256 bits");
        Self(Arc::new(key))
    }
}

impl fmt::Debug for PageTokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PageTokenKey(..)")
    }
}

fn mac(key: &PageTokenKey, fingerprint: &str, cursor: &str) -> Hmac<Sha256> {
    // new_from_slice accepts keys of any length for HMAC.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("hmac takes any key length");
    mac.update(&(fingerprint.len() as u64).to_be_bytes());
    mac.update(fingerprint.as_bytes());
    mac.update(cursor.as_bytes());
    mac
}

/// Encodes `cursor` for the request identified by `fingerprint`.
pub(crate) fn encode(key: &PageTokenKey, fingerprint: &str, cursor: &str) -> String {
    let tag = mac(key, fingerprint, cursor).finalize().into_bytes();
    let mut bytes = tag.to_vec();
    bytes.extend_from_slice(cursor.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a page token; `None` for the first page.
pub(crate) fn decode(
    key: &PageTokenKey,
    fingerprint: &str,
    token: &str,
) -> ControlResult<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || ControlError::invalid("page_token", "is not a page token of this request");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    if bytes.len() < 32 {
        return Err(invalid());
    }
    let (tag, cursor) = bytes.split_at(32);
    let cursor = std::str::from_utf8(cursor).map_err(|_| invalid())?;
    mac(key, fingerprint, cursor)
        .verify_slice(tag)
        .map_err(|_| invalid())?;
    Ok(Some(cursor.to_owned()))
}

/// Decodes a page token whose cursor is a number (a row id or version).
pub(crate) fn decode_number(
    key: &PageTokenKey,
    fingerprint: &str,
    token: &str,
) -> ControlResult<Option<i64>> {
    decode(key, fingerprint, token)?
        .map(|cursor| {
            cursor
                .parse()
                .map_err(|_| ControlError::invalid("page_token", "is malformed"))
        })
        .transpose()
}

/// Cuts `rows` (fetched with one extra row) to a page and returns the token
/// of the next page, or an empty string on the last page.
pub(crate) fn next_page<T>(
    key: &PageTokenKey,
    fingerprint: &str,
    rows: &mut Vec<T>,
    page_size: u64,
    cursor: impl Fn(&T) -> String,
) -> String {
    if rows.len() as u64 <= page_size {
        return String::new();
    }
    rows.truncate(page_size as usize);
    let last = rows.last().map(cursor).unwrap_or_default();
    encode(key, fingerprint, &last)
}

/// Validates and defaults a page size.
pub(crate) fn page_size(requested: i32) -> ControlResult<u64> {
    match requested {
        0 => Ok(PAGE_SIZE_DEFAULT),
        size if size < 0 => Err(ControlError::invalid("page_size", "must not be negative")),
        size => Ok((size as u64).min(PAGE_SIZE_MAX)),
    }
}

/// One comparison of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilterTerm {
    pub key: String,
    /// `=`, `>=`, `<=`, `>` or `<`.
    pub op: &'static str,
    pub value: String,
}

/// Parses a filter of the form `key = "value" AND key >= "value"` (AIP-160's
/// conjunction of comparisons with quoted values).
pub(crate) fn parse_filter_terms(filter: &str) -> ControlResult<Vec<FilterTerm>> {
    let mut terms = Vec::new();
    let mut rest = filter.trim();
    let invalid = |why: &str| ControlError::invalid("filter", why.to_owned());
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| invalid("must be terms like key = \"value\" joined by AND"))?;
        let key = &rest[..key_end];
        if key.is_empty() {
            return Err(invalid("has a malformed field name"));
        }
        let after_key = rest[key_end..].trim_start();
        let op = [">=", "<=", "=", ">", "<"]
            .into_iter()
            .find(|op| after_key.starts_with(op))
            .ok_or_else(|| invalid("must be terms like key = \"value\" joined by AND"))?;
        let quoted = after_key[op.len()..]
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| invalid("values must be double-quoted"))?;
        let end = quoted
            .find('"')
            .ok_or_else(|| invalid("has an unterminated string"))?;
        terms.push(FilterTerm {
            key: key.to_owned(),
            op,
            value: quoted[..end].to_owned(),
        });
        rest = quoted[end + 1..].trim_start();
        if !rest.is_empty() {
            rest = rest
                .strip_prefix("AND")
                .ok_or_else(|| invalid("terms must be joined by AND"))?
                .trim_start();
            if rest.is_empty() {
                return Err(invalid("ends with AND"));
            }
        }
    }
    Ok(terms)
}

/// Parses a filter of equalities only: `key = "value" AND key = "value"`.
pub(crate) fn parse_filter(filter: &str) -> ControlResult<Vec<(String, String)>> {
    parse_filter_terms(filter)?
        .into_iter()
        .map(|term| {
            if term.op == "=" {
                Ok((term.key, term.value))
            } else {
                Err(ControlError::invalid(
                    "filter",
                    format!("{} supports only '='", term.key),
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PageTokenKey {
        PageTokenKey::new(vec![7; 32])
    }

    #[test]
    fn tokens_round_trip_and_detect_tampering() {
        let token = encode(&key(), "list|a", "CURSOR");
        assert_eq!(
            decode(&key(), "list|a", &token).unwrap().as_deref(),
            Some("CURSOR")
        );
        assert!(decode(&key(), "list|b", &token).is_err());
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        assert!(decode(&key(), "list|a", &URL_SAFE_NO_PAD.encode(bytes)).is_err());
        assert!(decode(&key(), "list|a", "garbage!").is_err());
        assert_eq!(decode(&key(), "list|a", "").unwrap(), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_tokens_never_decode_and_never_panic(token in ".{0,200}") {
            proptest::prop_assert!(token.is_empty() || decode(&key(), "list|a", &token).is_err());
        }

        #[test]
        fn encoded_cursors_round_trip(cursor in ".{0,100}", fingerprint in ".{0,40}") {
            let token = encode(&key(), &fingerprint, &cursor);
            proptest::prop_assert_eq!(decode(&key(), &fingerprint, &token).unwrap(), Some(cursor));
        }

        #[test]
        fn arbitrary_bytes_in_base64_never_decode(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let token = URL_SAFE_NO_PAD.encode(&bytes);
            proptest::prop_assert!(token.is_empty() || decode(&key(), "list|a", &token).is_err());
        }

        #[test]
        fn any_bit_flipped_or_byte_cut_is_refused(
            cursor in ".{0,60}",
            position in proptest::num::usize::ANY,
            bit in 0u8..8,
        ) {
            let token = encode(&key(), "list|a", &cursor);
            let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
            let at = position % bytes.len();
            let mut flipped = bytes.clone();
            flipped[at] ^= 1 << bit;
            proptest::prop_assert!(decode(&key(), "list|a", &URL_SAFE_NO_PAD.encode(&flipped)).is_err());
            let cut = &bytes[..at];
            proptest::prop_assert!(cut.is_empty() || decode(&key(), "list|a", &URL_SAFE_NO_PAD.encode(cut)).is_err());
            // Another request's fingerprint or another installation's key refuses it too.
            proptest::prop_assert!(decode(&key(), "list|b", &token).is_err());
            proptest::prop_assert!(decode(&PageTokenKey::new(vec![8; 32]), "list|a", &token).is_err());
        }

        #[test]
        fn arbitrary_filters_never_panic(filter in ".{0,120}") {
            let _ = parse_filter_terms(&filter);
        }
    }

    #[test]
    fn filters_parse_conjunctions() {
        let terms =
            parse_filter(r#"type = "postgres" AND deployment="workspaces/a/deployments/b""#)
                .unwrap();
        assert_eq!(terms.len(), 2);
        assert_eq!(
            terms[1],
            ("deployment".into(), "workspaces/a/deployments/b".into())
        );
        let terms = parse_filter_terms(
            r#"create_time >= "2026-01-01T00:00:00Z" AND create_time<"2027-01-01T00:00:00Z""#,
        )
        .unwrap();
        assert_eq!((terms[0].op, terms[1].op), (">=", "<"));
        assert!(parse_filter(r#"type >= "x""#).is_err());
        for bad in [
            "type",
            "type = postgres",
            "type = \"x\" OR a = \"b\"",
            "type = \"x\" AND",
            "= \"x\"",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }
}
