//! The token endpoint's request parser: the form body and the Basic header, split from one input
//! at the first newline (header first).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (auth, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    if let Ok(v) = http::HeaderValue::from_bytes(auth) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    let _ = iamgate::authn::request::parse(&headers, None, body);
});
