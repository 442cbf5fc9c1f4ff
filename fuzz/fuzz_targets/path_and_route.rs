//! The path rules and the route match of the shipped route table, on any method and path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static ROUTES: OnceLock<iamgate::proxy::table::Routes> = OnceLock::new();
    let routes = ROUTES.get_or_init(|| iamgate::proxy::table::Routes::default_table().expect("routes"));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (method, path) = text.split_once(' ').unwrap_or(("GET", text));
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    if let Ok(segments) = iamgate::proxy::path::split(path) {
        let _ = routes.find(&method, &segments);
    }
});
