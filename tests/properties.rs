//! Property tests: personal ID numbers, the shipped mappings over generated
//! registry records and arbitrary JSON, and the 2025 crosswalk.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test or a benchmark stops at its first surprise")]

use lgsp::adapter::mapping::Mapping;
use lgsp::adapter::Adapter;
use lgsp::config::Settings;
use lgsp::domain::citizen_id::LEGACY_PROVINCES;
use lgsp::domain::{AdminUnits, CitizenId, Sex};
use lgsp::registries::population::Population;
use lgsp::registries::{render, RegistryKind};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::OnceLock;

fn sex() -> impl Strategy<Value = Sex> {
    prop_oneof![Just(Sex::Male), Just(Sex::Female)]
}

proptest! {
    #[test]
    fn any_string_parses_or_is_refused_without_panicking(s in "\\PC{0,20}") {
        if let Ok(id) = CitizenId::parse(&s) {
            prop_assert_eq!(id.to_string(), s);
        }
    }

    #[test]
    fn a_number_built_from_its_parts_parses_back_to_them(
        p in 0..LEGACY_PROVINCES.len(), sex in sex(), year in 1900i16..2100, random in 0u32..1_000_000
    ) {
        let id = CitizenId::from_parts(LEGACY_PROVINCES[p], sex, year, random);
        let text = id.to_string();
        prop_assert_eq!(text.len(), 12);
        let parsed = CitizenId::parse(&text).unwrap();
        prop_assert_eq!(parsed.sex(), sex);
        prop_assert_eq!(parsed.birth_year(), year);
        prop_assert_eq!(parsed.birth_province(), format!("{:02}", LEGACY_PROVINCES[p]));
        prop_assert!(parsed.contradictions(year, sex).is_empty());
    }

    #[test]
    fn twelve_characters_with_a_non_digit_are_refused(digits in "[0-9]{12}", at in 0usize..12, c in "[^0-9]") {
        let mut s: Vec<char> = digits.chars().collect();
        s[at] = c.chars().next().unwrap();
        let s: String = s.into_iter().collect();
        prop_assert!(CitizenId::parse(&s).is_err());
    }
}

fn population() -> &'static Population {
    static POP: OnceLock<Population> = OnceLock::new();
    POP.get_or_init(|| Population::generate(7, 5_000))
}

fn shipped(id: &str) -> &'static Adapter {
    static ADAPTERS: OnceLock<Vec<Adapter>> = OnceLock::new();
    let all = ADAPTERS.get_or_init(|| {
        lgsp::adapter::SHIPPED
            .iter()
            .map(|(_, text)| {
                Adapter::compile(
                    &serde_json::from_str(text).unwrap(),
                    1,
                    &Settings::default(),
                    &lgsp::elements::Elements::shipped(),
                )
                .unwrap()
            })
            .collect()
    });
    all.iter().find(|a| a.id == id).unwrap()
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_citizen_record_maps_to_schema_valid_elements(i in 0usize..5_000) {
        let pop = population();
        let person = &pop.people[i];
        let answer = RegistryKind::Population.envelope(render::population_record(pop, person));
        let op = &shipped("population").operations["citizen"];
        prop_assert!(op.check_response(&answer).is_ok());
        let mapped = op.map(&answer, &|_| true).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(&mapped.elements["citizen_id"], &json!(person.id.to_string()));
        prop_assert_eq!(&mapped.elements["full_name"], &json!(person.name.full()));
        prop_assert_eq!(&mapped.elements["date_of_birth"], &json!(person.dob.to_string()));
        let address = &mapped.elements["permanent_residence"];
        prop_assert!(AdminUnits::get().ward(address["ward_code"].as_str().unwrap()).is_some(), "{}", address);
    }

    #[test]
    fn arbitrary_json_never_panics_a_mapping_or_a_schema_check(input in json_value()) {
        for adapter in ["population", "civil_status", "insurance"] {
            for op in shipped(adapter).operations.values() {
                // Each either accepts or says why; neither panics (a panic fails the case).
                let _ = op.check_response(&input);
                let _ = op.map(&input, &|_| true);
                let _ = op.check_request(&input);
            }
        }
    }

    #[test]
    fn a_plain_path_gives_what_jq_gives(
        input in json_value(),
        keys in prop::collection::vec(prop_oneof![Just("a"), Just("b_1"), Just("du_lieu")], 0..4),
    ) {
        // `.a.b` runs as direct lookups; `run_jq` runs the same program on jaq.
        let path = if keys.is_empty() { ".".to_string() } else { format!(".{}", keys.join(".")) };
        let m = Mapping::compile(&path).unwrap();
        prop_assert!(m.is_direct());
        prop_assert_eq!(m.run(&input), m.run_jq(&input), "{} on {}", path, input);
        // Wrapped in the input under keys, the value comes back out.
        let mut nested = input.clone();
        for k in keys.iter().rev() {
            nested = Value::Object([(k.to_string(), nested)].into_iter().collect());
        }
        prop_assert_eq!(m.run(&nested).unwrap(), input);
    }

    #[test]
    fn every_shipped_mapping_gives_what_jq_gives_on_registry_records_with_any_field_replaced(
        i in 0usize..5_000,
        replace in prop::collection::vec((any::<prop::sample::Index>(), json_value()), 0..4),
    ) {
        let pop = population();
        let person = &pop.people[i];
        let records = [
            (RegistryKind::Population, Some(render::population_record(pop, person))),
            (RegistryKind::Population, Some(render::population_household(pop, person))),
            (RegistryKind::CivilStatus, render::birth_record(pop, person)),
            (RegistryKind::CivilStatus, Some(render::marriage_record(pop, person))),
            (RegistryKind::CivilStatus, render::death_record(pop, person)),
            (RegistryKind::Insurance, Some(render::insurance_record(pop, person))),
        ];
        for (kind, record) in records {
            let Some(mut record) = record else { continue };
            for (at, value) in &replace {
                replace_field(&mut record, at, value.clone());
            }
            let answer = kind.envelope(record);
            let adapter = kind.name();
            for op in shipped(adapter).operations.values() {
                let (direct, jq) = (op.mapping().run(&answer, &|_| true), op.mapping().run_jq(&answer, &|_| true));
                prop_assert_eq!(direct, jq, "{}.{} on {}", adapter, op.name, answer);
            }
        }
    }

    #[test]
    fn every_shipped_mapping_gives_what_jq_gives_on_arbitrary_json(input in json_value()) {
        for adapter in RegistryKind::ALL.map(RegistryKind::name) {
            for op in shipped(adapter).operations.values() {
                for input in [input.clone(), json!({"du_lieu": input, "Data": input, "data": input})] {
                    let (direct, jq) = (op.mapping().run(&input, &|_| true), op.mapping().run_jq(&input, &|_| true));
                    prop_assert_eq!(direct, jq, "{}.{} on {}", adapter, op.name, input);
                }
            }
        }
    }

    #[test]
    fn every_legacy_ward_lands_on_a_current_ward_of_the_crosswalk(i in any::<prop::sample::Index>()) {
        let units = AdminUnits::get();
        let w = &units.legacy[i.index(units.legacy.len())];
        let codes = w.codes();
        let n = units.from_legacy(&codes).map_err(|e| TestCaseError::fail(format!("{}: {e}", w.ward_code)))?;
        let current = units.ward(n.ward_code);
        prop_assert!(current.is_some(), "{} -> {}", w.ward_code, n.ward_code);
        prop_assert_eq!(&current.unwrap().province_code, &n.province_code);
        prop_assert_eq!(n.is_guess, !n.alternatives.is_empty());
        prop_assert_eq!(units.from_legacy(&codes).unwrap(), n, "deterministic");
    }
}

/// Replaces the value of one object field, anywhere in `v` (chosen by `at`
/// among all fields, in document order), with `new`.
fn replace_field(v: &mut Value, at: &prop::sample::Index, new: Value) {
    fn count(v: &Value) -> usize {
        match v {
            Value::Object(o) => o.values().map(|c| 1 + count(c)).sum(),
            Value::Array(a) => a.iter().map(count).sum(),
            _ => 0,
        }
    }
    fn set(v: &mut Value, n: &mut usize, new: &mut Option<Value>) {
        match v {
            Value::Object(o) => {
                for child in o.values_mut() {
                    if new.is_none() {
                        return;
                    }
                    if *n == 0 {
                        *child = new.take().unwrap();
                        return;
                    }
                    *n -= 1;
                    set(child, n, new);
                }
            }
            Value::Array(a) => {
                for child in a.iter_mut() {
                    set(child, n, new);
                }
            }
            _ => {}
        }
    }
    let total = count(v);
    if total > 0 {
        set(v, &mut at.index(total), &mut Some(new));
    }
}

#[test]
fn the_shipped_element_programs_run_without_the_interpreter() {
    use lgsp::adapter::mapping::ElementMapping;
    let mut interpreted = Vec::new();
    for adapter in RegistryKind::ALL.map(RegistryKind::name) {
        // The reads are the hot path; a flow's steps call the others.
        for op in shipped(adapter).operations.values().filter(|op| op.kind == lgsp::adapter::OperationKind::Read) {
            let programs: Vec<(String, &Mapping)> = match op.mapping() {
                ElementMapping::Program(m) => vec![(String::new(), m)],
                ElementMapping::PerElement { root, elements } => std::iter::once((".root".to_string(), root))
                    .chain(elements.iter().map(|(name, m)| (name.clone(), m)))
                    .collect(),
            };
            for (element, m) in programs {
                if !m.is_direct() {
                    interpreted.push(format!(
                        "{adapter}.{}{}{element}",
                        op.name,
                        if element.is_empty() { "" } else { "." }
                    ));
                }
            }
        }
    }
    // These use jq beyond the direct fragment (map, select, join, string
    // slices, with_entries) and stay on jaq; every other program runs directly.
    assert_eq!(
        interpreted,
        ["civil_status.birth.full_name", "civil_status.birth.given_names", "insurance.card.health_insurance_card"]
    );
}
