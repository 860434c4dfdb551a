//! Form loading: any bytes a steward could send to `POST /admin/v1/forms`
//! either compile (against the shipped adapters' operations) or are refused
//! with problems.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

fn operations() -> &'static BTreeMap<String, BTreeSet<String>> {
    static OPS: OnceLock<BTreeMap<String, BTreeSet<String>>> = OnceLock::new();
    OPS.get_or_init(|| {
        let settings = lgsp::config::Settings::default();
        let mut ops = BTreeMap::new();
        for (_, text) in lgsp::adapter::SHIPPED {
            let adapter = lgsp::adapter::Adapter::compile(&serde_json::from_str(text).unwrap(), 1, &settings).unwrap();
            for (name, op) in &adapter.operations {
                ops.insert(format!("{}.{name}", adapter.id), op.elements.iter().cloned().collect());
            }
        }
        ops
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(definition) = serde_json::from_slice::<serde_json::Value>(data) {
        match lgsp::form::Form::compile(&definition, 1, operations()) {
            Ok(form) => {
                let (bound, total) = form.ceiling();
                assert!(bound <= total);
            }
            Err(problems) => assert!(!problems.is_empty(), "a refusal names at least one problem"),
        }
    }
});
