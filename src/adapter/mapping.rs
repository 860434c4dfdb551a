//! Mappings from a registry's response to canonical data elements, written in
//! jq and compiled once (by jaq) when the adapter is loaded.
//!
//! A steward expresses date formats (`split("/") | "\(.[2])-\(.[1])-\(.[0])"`),
//! code tables (`{"1": "male", "2": "female"}[.gioi_tinh]`), name joining and
//! splitting in jq; no Rust changes.
//!
//! An operation's mapping is either one jq program that builds the whole object
//! of elements, or a program per element ([`ElementMapping::PerElement`]): a
//! `root` selecting the part of the response they read, shared `defs`, code
//! `tables` bound once as `$name`, and one program per element. The second
//! form runs only the programs for the elements a caller may receive.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, Compiler, Ctx, Vars};
use jaq_json::{Num, Val};
use serde::Deserialize;
use serde_json::Value;

type Filter = jaq_core::Filter<data::JustLut<Val>>;

/// A compiled jq program.
pub struct Mapping {
    filter: Filter,
    /// Values of the global variables the program was compiled with, in order.
    globals: Vec<Val>,
    /// Set when the program is a plain path such as `.so_dinh_danh`: it then
    /// runs as direct lookups, without the interpreter.
    direct: Option<KeyPath>,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mapping")
    }
}

impl Mapping {
    /// Parses and compiles `code`; the error says what is wrong and where.
    pub fn compile(code: &str) -> Result<Mapping, String> {
        Mapping::compile_with("", code, &[])
    }

    /// Compiles `code` after the jq definitions `defs`, with each of `globals`
    /// bound to `$name`. `defs` must hold definitions only (see
    /// [`ElementMapping::per_element`]), so a plain-path `code` keeps its meaning.
    pub fn compile_with(defs: &str, code: &str, globals: &[(String, Val)]) -> Result<Mapping, String> {
        let program = if defs.is_empty() { code.to_string() } else { format!("{defs}\n{code}") };
        let jq_defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs());
        let loader = Loader::new(jq_defs);
        let arena = Arena::default();
        let modules =
            loader.load(&arena, File { code: program.as_str(), path: () }).map_err(|errs| describe(&program, &errs))?;
        let names: Vec<String> = globals.iter().map(|(name, _)| format!("${name}")).collect();
        let filter = Compiler::default()
            .with_funs(funs)
            .with_global_vars(names.iter().map(String::as_str))
            .compile(modules)
            .map_err(|errs| describe(&program, &errs))?;
        Ok(Mapping { filter, globals: globals.iter().map(|(_, v)| v.clone()).collect(), direct: KeyPath::parse(code) })
    }

    /// Runs the program on `input`; the first output is the result.
    pub fn run(&self, input: &Value) -> Result<Value, String> {
        if let Some(path) = &self.direct {
            return path.get(input).map(|v| v.cloned().unwrap_or(Value::Null));
        }
        match self.run_val(to_val(input)?)? {
            Some(v) => Ok(to_json(&v)),
            None => Err("the mapping produced no output".into()),
        }
    }

    /// Runs the program on a jaq value: its first output, or `None` when it
    /// produces none.
    pub fn run_val(&self, input: Val) -> Result<Option<Val>, String> {
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new(self.globals.iter().cloned()));
        let mut out = self.filter.id.run((ctx, input));
        match out.next() {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v)),
            // `halt` and `error` both end the mapping; neither may end the process.
            Some(Err(exn)) => Err(match exn.get_err() {
                Ok(err) => format!("the mapping failed: {err}"),
                Err(_) => "the mapping called halt".into(),
            }),
        }
    }
}

/// serde_json's value to jaq's.
pub fn to_val(v: &Value) -> Result<Val, String> {
    Val::deserialize(v).map_err(|e| format!("input is not JSON: {e}"))
}

fn describe<E: std::fmt::Debug>(code: &str, errs: &E) -> String {
    let first_line = code.lines().next().unwrap_or("");
    format!("jq program does not compile ({first_line}…): {errs:?}")
}

/// How an operation's response becomes canonical elements.
#[derive(Debug)]
pub enum ElementMapping {
    /// One program producing the object of elements.
    Program(Mapping),
    /// A program per element, run on the output of `root`.
    PerElement { root: Mapping, elements: Vec<(String, Mapping)> },
}

/// Where a per-element mapping failed to compile: `None` for the shared part
/// (`root`, `defs`, `tables`), or the element's name.
pub type CompileError = (Option<String>, String);

impl ElementMapping {
    /// Compiles the per-element form. `defs` is prepended to every element's
    /// program; `tables` are bound as `$name` in each.
    pub fn per_element<'a>(
        root: &str,
        defs: &str,
        tables: impl IntoIterator<Item = (&'a String, &'a Value)>,
        elements: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<ElementMapping, Vec<CompileError>> {
        let mut errors = Vec::new();
        let mut globals = Vec::new();
        for (name, table) in tables {
            match to_val(table) {
                Ok(v) => globals.push((name.clone(), v)),
                Err(e) => errors.push((None, format!("table {name}: {e}"))),
            }
        }
        // Only definitions, so that an element program means the same with them or without.
        if !defs.trim().is_empty() && jaq_core::load::parse(defs, |p| p.defs()).is_none() {
            errors.push((None, "defs must hold only definitions (def name: ...;)".to_string()));
        }
        let root = Mapping::compile(root).map_err(|e| errors.push((None, format!("root: {e}"))));
        let mut compiled = Vec::new();
        for (element, code) in elements {
            match Mapping::compile_with(defs, code, &globals) {
                Ok(m) => compiled.push((element.clone(), m)),
                Err(e) => errors.push((Some(element.clone()), e)),
            }
        }
        match root {
            Ok(root) if errors.is_empty() => Ok(ElementMapping::PerElement { root, elements: compiled }),
            _ => Err(errors),
        }
    }

    /// Maps `input` to the elements `wanted` accepts; elements mapped to null
    /// (or to nothing) are left out.
    pub fn run(&self, input: &Value, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<(String, Value)>, String> {
        match self {
            ElementMapping::Program(m) => match m.run(input)? {
                Value::Object(obj) => Ok(obj.into_iter().filter(|(k, v)| !v.is_null() && wanted(k)).collect()),
                _ => Err("the mapping must produce an object of elements".into()),
            },
            ElementMapping::PerElement { root, elements } => {
                let mut todo = elements.iter().filter(|(name, _)| wanted(name)).peekable();
                if todo.peek().is_none() {
                    return Ok(Vec::new());
                }
                // The root as serde_json's value, borrowed when it is a plain path;
                // converted to jaq's value only if an element program needs jq.
                let owned;
                let root: &Value = match &root.direct {
                    Some(path) => path.get(input)?.unwrap_or(&Value::Null),
                    None => {
                        let v = root.run_val(to_val(input)?)?.ok_or("the mapping's root produced no output")?;
                        owned = to_json(&v);
                        &owned
                    }
                };
                let mut root_val: Option<Val> = None;
                let mut out = Vec::new();
                for (name, m) in todo {
                    let value = match &m.direct {
                        Some(path) => path.get(root).map_err(|e| format!("{name}: {e}"))?.cloned(),
                        None => {
                            let input = match &root_val {
                                Some(v) => v.clone(),
                                None => root_val.insert(to_val(root)?).clone(),
                            };
                            m.run_val(input).map_err(|e| format!("{name}: {e}"))?.map(|v| to_json(&v))
                        }
                    };
                    match value {
                        None | Some(Value::Null) => {}
                        Some(v) => out.push((name.clone(), v)),
                    }
                }
                Ok(out)
            }
        }
    }
}

/// A jq program that is only a path of plain keys (`.`, `.a`, `.a.b`), run on
/// serde_json's value with jq's meaning: null, or an object without the key,
/// gives null; indexing anything else is an error.
#[derive(Debug)]
struct KeyPath(Vec<String>);

/// Words jq reads as keywords, never as a key after `.`.
const JQ_KEYWORDS: [&str; 18] = [
    "and", "or", "if", "then", "elif", "else", "end", "as", "def", "reduce", "foreach", "try", "catch", "label",
    "import", "include", "__loc__", "not",
];

impl KeyPath {
    fn parse(code: &str) -> Option<KeyPath> {
        let code = code.trim();
        if code == "." {
            return Some(KeyPath(Vec::new()));
        }
        let keys: Vec<String> = code.strip_prefix('.')?.split('.').map(str::to_string).collect();
        let plain = |k: &String| {
            let mut chars = k.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !JQ_KEYWORDS.contains(&k.as_str())
        };
        keys.iter().all(plain).then_some(KeyPath(keys))
    }

    /// The value at the path; `None` stands for null.
    fn get<'a>(&self, input: &'a Value) -> Result<Option<&'a Value>, String> {
        let mut at = input;
        for key in &self.0 {
            at = match at {
                Value::Null => return Ok(None),
                Value::Object(o) => match o.get(key) {
                    Some(v) => v,
                    None => return Ok(None),
                },
                other => {
                    let kind = match other {
                        Value::Bool(_) => "boolean",
                        Value::Number(_) => "number",
                        Value::String(_) => "string",
                        _ => "array",
                    };
                    return Err(format!("the mapping failed: cannot index {kind} with \"{key}\""));
                }
            };
        }
        Ok(Some(at))
    }
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
    fn per_element_programs_share_root_defs_and_tables() {
        let elements: Vec<(String, String)> = [
            ("sex", "$sex[.g]"),
            ("marital_status", "$marital[.m] // \"other\""),
            ("date_of_birth", ".d | dmy"),
            ("phone", ".phone"),
            ("email", "empty"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let tables = [
            ("marital".to_string(), json!({"1": "single", "2": "married"})),
            ("sex".to_string(), json!({"1": "male", "2": "female"})),
        ];
        let m = ElementMapping::per_element(
            ".data",
            r#"def dmy: split("/") | "\(.[2])-\(.[1])-\(.[0])";"#,
            tables.iter().map(|(k, v)| (k, v)),
            elements.iter().map(|(k, v)| (k, v)),
        )
        .unwrap();
        let input = json!({"data": {"g": "2", "m": "9", "d": "12/05/1990", "phone": null}});
        let out: serde_json::Map<String, Value> = m.run(&input, &|_| true).unwrap().into_iter().collect();
        // Null and empty results are left out.
        assert_eq!(
            Value::Object(out),
            json!({"sex": "female", "marital_status": "other", "date_of_birth": "1990-05-12"})
        );
        let only: Vec<String> = m.run(&input, &|e| e == "sex").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(only, ["sex"]);
        // A failing program names its element.
        let err = m.run(&json!({"data": {"g": "1", "d": 5}}), &|e| e == "date_of_birth").unwrap_err();
        assert!(err.starts_with("date_of_birth: "), "{err}");
    }

    #[test]
    fn plain_paths_run_without_the_interpreter_and_mean_the_same() {
        for (code, direct) in [
            (".", true),
            (".a", true),
            (".a.b_2", true),
            ("(.a)", false),
            (".a[0]", false),
            (".and", false),
            (".\"a\"", false),
            (".a?", false),
            ("..", false),
        ] {
            assert_eq!(Mapping::compile(code).unwrap().direct.is_some(), direct, "{code}");
        }
        let inputs = [
            json!(null),
            json!({}),
            json!({"a": null}),
            json!({"a": {"b_2": 1}}),
            json!({"a": "s"}),
            json!({"a": [1]}),
            json!(5),
            json!("x"),
            json!(true),
            json!([1]),
        ];
        for code in [".", ".a", ".a.b_2"] {
            let (direct, jq) = (Mapping::compile(code).unwrap(), Mapping::compile(&format!("({code})")).unwrap());
            for input in &inputs {
                match (direct.run(input), jq.run(input)) {
                    (Ok(d), Ok(j)) => assert_eq!(d, j, "{code} on {input}"),
                    (Err(_), Err(_)) => {}
                    (d, j) => panic!("{code} on {input}: direct {d:?}, jq {j:?}"),
                }
            }
        }
    }

    #[test]
    fn defs_hold_only_definitions() {
        let elements = [("full_name".to_string(), ".x".to_string())];
        let compile = |defs: &str| ElementMapping::per_element(".", defs, [], elements.iter().map(|(k, v)| (k, v)));
        assert!(compile("def f: .a; def g(x): x | f;").is_ok());
        // Not a definition: it would change what every element program reads.
        let errs = compile(".wrapped |").unwrap_err();
        assert!(errs.iter().any(|(at, m)| at.is_none() && m.contains("only definitions")), "{errs:?}");
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
