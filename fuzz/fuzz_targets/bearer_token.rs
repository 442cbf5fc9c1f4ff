//! Verification of a bearer access token against a real key ring: anything that is not a token
//! this ring signed is refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

struct Setup {
    runtime: tokio::runtime::Runtime,
    verifier: iamgate::token::verifier::AccessTokenVerifier,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let key = Arc::new(iamgate::token::SigningKey::generate(None).expect("key"));
        let set = iamgate::token::KeySet::new(vec![(iamgate::model::KeyStatus::Active, key)])
            .expect("key set");
        Setup {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
            verifier: iamgate::token::verifier::AccessTokenVerifier::new(
                iamgate::token::KeyRing::new(set),
                "https://iamgate.example",
                "https://iamgate.example",
                std::time::Duration::from_secs(30),
                1 << 20,
            ),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // Raw bytes, as a header carries them: the verifier checks they are text itself.
    let s = setup();
    let _ = s.runtime.block_on(s.verifier.verify(data, 1_800_000_000));
});
