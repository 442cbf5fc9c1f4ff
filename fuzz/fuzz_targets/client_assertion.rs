//! A client assertion's structural checks (header, claims, audience, lifetime) before any
//! signature is verified.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let rules = iamgate::authn::assertion::AssertionRules {
        audiences: vec!["console-client-credentials".to_owned()],
        skew: 30,
        max_lifetime: 3600,
    };
    let _ = iamgate::authn::assertion::Assertion::parse(token, &rules, 1_800_000_000);
});
