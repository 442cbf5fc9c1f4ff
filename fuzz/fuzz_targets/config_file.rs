//! The configuration file: YAML into the raw model, then every section's validation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(raw) = iamgate::config::parse_yaml(text) {
        let _ = raw.validate();
    }
});
