//! A route table file: YAML into routes, with every check compiled.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = iamgate::proxy::table::Routes::from_yaml(text);
});
