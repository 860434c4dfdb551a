//! Mappings from a registry's response to canonical data elements, written in
//! jq and compiled once (by jaq) when the adapter is loaded.
//!
//! A steward expresses date formats (`split("/") | "\(.[2])-\(.[1])-\(.[0])"`),
//! code tables (`{"1": "male", "2": "female"}[.gioi_tinh]`), name joining and
//! splitting in jq; no Rust changes.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, Compiler, Ctx, Vars};
use jaq_json::{Num, Val};
use serde::Deserialize;
use serde_json::Value;

type Filter = jaq_core::Filter<data::JustLut<Val>>;

/// A compiled jq program.
pub struct Mapping {
    filter: Filter,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mapping")
    }
}

impl Mapping {
    /// Parses and compiles `code`; the error says what is wrong and where.
    pub fn compile(code: &str) -> Result<Mapping, String> {
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader.load(&arena, File { code, path: () }).map_err(|errs| describe(code, &errs))?;
        let filter = Compiler::default().with_funs(funs).compile(modules).map_err(|errs| describe(code, &errs))?;
        Ok(Mapping { filter })
    }

    /// Runs the program on `input`; the first output is the result.
    pub fn run(&self, input: &Value) -> Result<Value, String> {
        let val = Val::deserialize(input).map_err(|e| format!("input is not JSON: {e}"))?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut out = self.filter.id.run((ctx, val));
        match out.next() {
            None => Err("the mapping produced no output".into()),
            Some(Ok(v)) => Ok(to_json(&v)),
            // `halt` and `error` both end the mapping; neither may end the process.
            Some(Err(exn)) => Err(match exn.get_err() {
                Ok(err) => format!("the mapping failed: {err}"),
                Err(_) => "the mapping called halt".into(),
            }),
        }
    }
}

fn describe<E: std::fmt::Debug>(code: &str, errs: &E) -> String {
    let first_line = code.lines().next().unwrap_or("");
    format!("jq program does not compile ({first_line}…): {errs:?}")
}

/// jaq's value to serde_json's.
pub fn to_json(v: &Val) -> Value {
    match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => match n {
            Num::Int(i) => Value::from(*i as i64),
            Num::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
            other => serde_json::from_str(&other.to_string()).unwrap_or(Value::Null),
        },
        Val::TStr(b) | Val::BStr(b) => Value::String(String::from_utf8_lossy(&b[..]).into_owned()),
        Val::Arr(a) => Value::Array(a.iter().map(to_json).collect()),
        Val::Obj(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(&b[..]).into_owned(),
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_code_tables_and_names() {
        let m = Mapping::compile(
            r#"{
              date_of_birth: (.ngay_sinh | split("/") | "\(.[2])-\(.[1])-\(.[0])"),
              sex: ({"1": "male", "2": "female"}[.gioi_tinh]),
              full_name: ([.Ho, .ChuDem, .Ten] | map(select(. != null and . != "")) | join(" ")),
              given_name: (.ho_ten | split(" ") | last),
              age_digits: (.so | tostring | length)
            }"#,
        )
        .unwrap();
        let out = m
            .run(&json!({"ngay_sinh": "12/05/1990", "gioi_tinh": "2", "Ho": "Nguyễn", "ChuDem": "Thị", "Ten": "Lan",
                         "ho_ten": "Nguyễn Thị Lan", "so": 12345}))
            .unwrap();
        assert_eq!(
            out,
            json!({"date_of_birth": "1990-05-12", "sex": "female", "full_name": "Nguyễn Thị Lan",
                   "given_name": "Lan", "age_digits": 5})
        );
    }

    #[test]
    fn time_functions_convert_formats() {
        let m = Mapping::compile(r#".d | strptime("%Y%m%d") | strftime("%Y-%m-%d")"#).unwrap();
        assert_eq!(m.run(&json!({"d": "20260131"})).unwrap(), json!("2026-01-31"));
    }

    #[test]
    fn compile_errors_are_reported_not_panicked() {
        assert!(Mapping::compile("{a: .b").is_err());
        assert!(Mapping::compile("no_such_function(1)").is_err());
    }

    #[test]
    fn runtime_errors_and_halt_do_not_end_the_process() {
        let m = Mapping::compile(r#"error("bad record")"#).unwrap();
        assert!(m.run(&json!({})).unwrap_err().contains("bad record"));
        let m = Mapping::compile("halt").unwrap();
        assert_eq!(m.run(&json!({})).unwrap_err(), "the mapping called halt");
        let m = Mapping::compile("empty").unwrap();
        assert!(m.run(&json!({})).is_err());
    }
}
