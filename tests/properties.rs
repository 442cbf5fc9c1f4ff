//! Properties of the network-facing decoders over generated inputs (proptest): the path the
//! policy decides on is exactly the path forwarded, and the token endpoint's form and Basic
//! decoders give back what a client encoded, and never panic on anything else.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use iamgate::authn::request::{ClientAuth, parse};
use iamgate::proxy::path::split;
use proptest::prelude::*;

/// Path segments from the characters that matter to the path rules.
fn segment() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("a".to_owned()),
            Just("Z9".to_owned()),
            Just("-_~".to_owned()),
            Just(".".to_owned()),
            Just("%".to_owned()),
            Just("%2e".to_owned()),
            Just("%2F".to_owned()),
            Just("%25".to_owned()),
            Just("%5c".to_owned()),
            Just("%20".to_owned()),
            Just("2e".to_owned()),
            Just("2F".to_owned()),
            Just("5c".to_owned()),
            Just("25".to_owned()),
            Just("%00".to_owned()),
            Just("\\".to_owned()),
            Just(";".to_owned()),
            Just("é".to_owned()),
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// What `split` accepts is forwarded byte for byte: the raw segments rebuild the path, each
    /// decoded segment is its raw one decoded, and no decoded segment is, or hides, a dot
    /// segment, a backslash or a control character.
    #[test]
    fn an_accepted_path_is_the_path_forwarded(segs in proptest::collection::vec(segment(), 0..5), slash in any::<bool>()) {
        let mut path = format!("/{}", segs.join("/"));
        if slash && !segs.is_empty() {
            path.push('/');
        }
        if let Ok(s) = split(&path) {
            let mut rebuilt = format!("/{}", s.raw.join("/"));
            if s.trailing_slash && !s.raw.is_empty() {
                rebuilt.push('/');
            }
            prop_assert_eq!(&rebuilt, &path);
            for (raw, decoded) in s.raw.iter().zip(&s.decoded) {
                prop_assert_eq!(percent_decode(raw), decoded.as_bytes().to_vec());
                for part in decoded.split('/') {
                    prop_assert!(part != "." && part != "..", "{path}");
                }
                prop_assert!(!decoded.contains('\\') && !decoded.chars().any(char::is_control), "{path}");
                // Decoding twice must not reveal a dot, separator or escape either.
                let lower = raw.to_ascii_lowercase();
                for twice in ["%252e", "%252f", "%255c", "%2525"] {
                    prop_assert!(!lower.contains(twice), "{path}");
                }
            }
        }
    }

    /// A Basic header built the way RFC 6749 §2.3.1 says (form-urlencode, then base64) decodes
    /// to the same id and secret, whatever characters they hold.
    #[test]
    fn basic_credentials_round_trip(id in "[ -~]{1,40}", secret in "[ -~]{1,64}") {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let raw = format!("{}:{}", enc(&id), enc(&secret));
        let mut h = http::HeaderMap::new();
        h.insert("content-type", "application/x-www-form-urlencoded".parse().unwrap());
        h.insert(
            "authorization",
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw)).parse().unwrap(),
        );
        let r = parse(&h, None, b"grant_type=client_credentials").unwrap();
        prop_assert_eq!(r.auth, ClientAuth::Basic { client_id: id, secret });
    }

    /// Any body and any Authorization header give an answer, never a panic.
    #[test]
    fn any_token_request_is_answered(body in proptest::collection::vec(any::<u8>(), 0..300), auth in proptest::collection::vec(32u8..127, 0..80)) {
        let mut h = http::HeaderMap::new();
        h.insert("content-type", "application/x-www-form-urlencoded".parse().unwrap());
        if let Ok(v) = http::HeaderValue::from_bytes(&auth) {
            h.insert("authorization", v);
        }
        let _ = parse(&h, None, &body);
    }
}
