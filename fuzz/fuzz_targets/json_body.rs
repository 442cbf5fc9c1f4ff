//! Resolution of resource ids from a JSON body by pointer (with `*` over arrays), as the
//! management and deploy routes do: any body and any pointer give ids or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (pointer, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"/projectsRole/*/projectId"[..], data),
    };
    let Ok(pointer) = std::str::from_utf8(pointer) else {
        return;
    };
    let Ok(source) = iamgate::proxy::table::Source::parse(&format!("body:{pointer}")) else {
        return;
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let params = iamgate::proxy::route::PathParams::default();
    let view = iamgate::proxy::resolve::RequestView {
        path_params: &params,
        query: &[],
        body: Some(&json),
    };
    let _ = view.values(&source);
});
