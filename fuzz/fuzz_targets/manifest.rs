//! Adapter manifest loading: any bytes a steward could send to
//! `POST /admin/v1/adapters` either compile or are refused with problems.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static SETTINGS: OnceLock<lgsp::config::Settings> = OnceLock::new();
    let settings = SETTINGS.get_or_init(Default::default);
    if let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Err(problems) = lgsp::adapter::Adapter::compile(&manifest, 1, settings) {
            assert!(!problems.is_empty(), "a refusal names at least one problem");
        }
    }
});
