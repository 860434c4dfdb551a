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

use super::direct::Expr;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, Compiler, Ctx, Vars};
use jaq_json::{Num, Val};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

type Filter = jaq_core::Filter<data::JustLut<Val>>;

/// Global variables (`$name`) bound for a program: the code tables of a
/// per-element mapping, as jaq values and as serde_json values. Cloning
/// shares them.
#[derive(Clone, Default)]
pub struct Globals {
    names: Arc<[String]>,
    jq: Arc<[Val]>,
    json: Arc<[Value]>,
}

impl Globals {
    /// Binds each table to `$name`; the error names the table at fault.
    pub fn new<'a>(tables: impl IntoIterator<Item = (&'a String, &'a Value)>) -> Result<Globals, String> {
        let (mut names, mut jq, mut json) = (Vec::new(), Vec::new(), Vec::new());
        for (name, table) in tables {
            jq.push(to_val(table).map_err(|e| format!("table {name}: {e}"))?);
            names.push(name.clone());
            json.push(table.clone());
        }
        Ok(Globals { names: names.into(), jq: jq.into(), json: json.into() })
    }
}

/// A compiled jq program.
pub struct Mapping {
    jq: Jq,
    globals: Globals,
    /// Set when the program is within the fragment that [`Expr`] evaluates
    /// directly on serde_json's values, without the interpreter.
    direct: Option<Expr>,
}

/// A program as jaq compiled it.
enum Jq {
    /// Compiled on its own.
    Own(Filter),
    /// One branch of a program holding every element program of an operation,
    /// selected by the global variable [`ELEMENT_VAR`]: jaq compiles its
    /// standard library into every program, about 100 KB each, so an
    /// operation's element programs share one copy.
    Shared { filter: Arc<Filter>, index: isize },
}

/// The variable that selects an element's branch in a shared program. An
/// operation with a code table of that name keeps a filter per program.
const ELEMENT_VAR: &str = "$__lgsp_element";

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mapping")
    }
}

/// The jq-defined parts of jaq's library a program is compiled with: none,
/// the core's, or all of them.
#[derive(Clone, Copy)]
enum Library {
    Natives,
    Core,
    Whole,
}

/// Compiles a whole program (definitions included) with jaq. A compiled
/// program holds every definition it was compiled with: 117 KB each with
/// jaq's whole jq-defined library, 58 KB with the core's, 10 KB with the
/// native filters alone. So a program is compiled with the least of these
/// it compiles with; a name is never bound differently, since no definition
/// of the library shares a name and arity with a native filter or with
/// another (a test checks it). Errors are those of the whole library.
fn compile_jq(program: &str, globals: &Globals, extra_var: Option<&str>) -> Result<Filter, String> {
    compile_jq_with(program, globals, extra_var, Library::Natives)
        .or_else(|_| compile_jq_with(program, globals, extra_var, Library::Core))
        .or_else(|_| compile_jq_with(program, globals, extra_var, Library::Whole))
}

fn library(which: Library) -> Vec<jaq_core::load::parse::Def<&'static str>> {
    match which {
        Library::Natives => Vec::new(),
        Library::Core => jaq_core::defs().collect(),
        Library::Whole => jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs()).collect(),
    }
}

fn compile_jq_with(
    program: &str,
    globals: &Globals,
    extra_var: Option<&str>,
    which: Library,
) -> Result<Filter, String> {
    let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs());
    let loader = Loader::new(library(which));
    let arena = Arena::default();
    let modules = loader.load(&arena, File { code: program, path: () }).map_err(|errs| describe(program, &errs))?;
    let mut names: Vec<String> = globals.names.iter().map(|name| format!("${name}")).collect();
    names.extend(extra_var.map(str::to_string));
    Compiler::default()
        .with_funs(funs)
        .with_global_vars(names.iter().map(String::as_str))
        .compile(modules)
        .map_err(|errs| describe(program, &errs))
}

impl Mapping {
    /// Parses and compiles `code`; the error says what is wrong and where.
    pub fn compile(code: &str) -> Result<Mapping, String> {
        Mapping::compile_with("", code, &Globals::default())
    }

    /// Compiles `code` after the jq definitions `defs`, with `globals` bound
    /// to their `$name`s. `defs` must hold definitions only (see
    /// [`ElementMapping::per_element`]), so that `code` keeps its meaning.
    pub fn compile_with(defs: &str, code: &str, globals: &Globals) -> Result<Mapping, String> {
        let program = if defs.is_empty() { code.to_string() } else { format!("{defs}\n{code}") };
        // jaq compiles every program, including those that will run directly:
        // it judges them, and runs any input the direct path leaves to it.
        let filter = compile_jq(&program, globals, None)?;
        let direct = Expr::compile(defs, code, &globals.names);
        Ok(Mapping { jq: Jq::Own(filter), globals: globals.clone(), direct })
    }

    /// Whether the program runs without the interpreter (when its input allows).
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Runs the program on `input`; the first output is the result.
    pub fn run(&self, input: &Value) -> Result<Value, String> {
        Ok(self.run_cow(input)?.into_owned())
    }

    /// [`Mapping::run`], borrowing from `input` where the result is part of it.
    fn run_cow<'a>(&'a self, input: &'a Value) -> Result<Cow<'a, Value>, String> {
        if let Some(Ok(v)) = self.direct.as_ref().map(|e| e.eval(input, &self.globals.json)) {
            return Ok(v);
        }
        self.run_jq(input).map(Cow::Owned)
    }

    /// Runs the program on jaq's interpreter, even when it could run directly:
    /// the reference that direct evaluation is checked against.
    pub fn run_jq(&self, input: &Value) -> Result<Value, String> {
        match self.run_val(to_val(input)?)? {
            Some(v) => Ok(to_json(&v)),
            None => Err("the mapping produced no output".into()),
        }
    }

    /// Runs the program on a jaq value: its first output, or `None` when it
    /// produces none.
    pub fn run_val(&self, input: Val) -> Result<Option<Val>, String> {
        let globals = self.globals.jq.iter().cloned();
        let (filter, vars) = match &self.jq {
            Jq::Own(filter) => (filter, Vars::new(globals.chain(None))),
            Jq::Shared { filter, index } => (&**filter, Vars::new(globals.chain(Some(Val::from(*index))))),
        };
        let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, vars);
        let mut out = filter.id.run((ctx, input));
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
        let globals = Globals::new(tables).unwrap_or_else(|e| {
            errors.push((None, e));
            Globals::default()
        });
        // Only definitions, so that an element program means the same with them or without.
        if !defs.trim().is_empty() && jaq_core::load::parse(defs, |p| p.defs()).is_none() {
            errors.push((None, "defs must hold only definitions (def name: ...;)".to_string()));
        }
        let root = Mapping::compile(root).map_err(|e| errors.push((None, format!("root: {e}"))));
        let elements: Vec<(&String, &String)> = elements.into_iter().collect();
        let mut compiled = Vec::new();
        for (element, code) in &elements {
            // Each program is compiled on its own first, so that an error names its element.
            match Mapping::compile_with(defs, code, &globals) {
                Ok(m) => compiled.push(((*element).clone(), m)),
                Err(e) => errors.push((Some((*element).clone()), e)),
            }
        }
        if errors.is_empty() && compiled.len() > 1 {
            share_jq(defs, &elements, &globals, &mut compiled);
        }
        match root {
            Ok(root) if errors.is_empty() => Ok(ElementMapping::PerElement { root, elements: compiled }),
            _ => Err(errors),
        }
    }

    /// Maps `input` to the elements `wanted` accepts; elements mapped to null
    /// (or to nothing) are left out.
    pub fn run(&self, input: &Value, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<(String, Value)>, String> {
        self.run_with(input, wanted, false)
    }

    /// [`ElementMapping::run`] with every program on jaq's interpreter: the
    /// reference that direct evaluation is checked against.
    pub fn run_jq(&self, input: &Value, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<(String, Value)>, String> {
        self.run_with(input, wanted, true)
    }

    fn run_with(
        &self,
        input: &Value,
        wanted: &dyn Fn(&str) -> bool,
        interpret: bool,
    ) -> Result<Vec<(String, Value)>, String> {
        let run = |m: &Mapping, input: &Value| if interpret { m.run_jq(input) } else { m.run(input) };
        match self {
            ElementMapping::Program(m) => match run(m, input)? {
                Value::Object(obj) => Ok(obj.into_iter().filter(|(k, v)| !v.is_null() && wanted(k)).collect()),
                _ => Err("the mapping must produce an object of elements".into()),
            },
            ElementMapping::PerElement { root, elements } => {
                let mut todo = elements.iter().filter(|(name, _)| wanted(name)).peekable();
                if todo.peek().is_none() {
                    return Ok(Vec::new());
                }
                // The root borrowed from the input when it is a path; converted
                // to jaq's value only if an element program needs the interpreter.
                let root: Cow<Value> = if interpret { Cow::Owned(root.run_jq(input)?) } else { root.run_cow(input)? };
                let mut root_val: Option<Val> = None;
                let mut out = Vec::new();
                for (name, m) in todo {
                    let direct = if interpret { None } else { m.direct.as_ref() };
                    let value = match direct.map(|e| e.eval(&root, &m.globals.json)) {
                        Some(Ok(v)) => Some(v.into_owned()),
                        _ => {
                            let input = match &root_val {
                                Some(v) => v.clone(),
                                None => root_val.insert(to_val(&root)?).clone(),
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

/// Replaces the element programs' own jaq filters with branches of one
/// program, found by a balanced tree of comparisons (five for 26 programs).
/// Each program is parenthesised on lines of its own, so it keeps its meaning;
/// should the whole not compile, each keeps its own filter.
fn share_jq(defs: &str, elements: &[(&String, &String)], globals: &Globals, compiled: &mut [(String, Mapping)]) {
    if globals.names.iter().any(|name| ELEMENT_VAR.strip_prefix('$') == Some(name)) {
        return;
    }
    fn branches(elements: &[(&String, &String)], first: usize, out: &mut String) {
        match elements {
            [(_, code)] => out.push_str(&format!("(\n{code}\n)")),
            _ => {
                let mid = elements.len() / 2;
                out.push_str(&format!("if {ELEMENT_VAR} < {} then ", first + mid));
                branches(&elements[..mid], first, out);
                out.push_str(" else ");
                branches(&elements[mid..], first + mid, out);
                out.push_str(" end");
            }
        }
    }
    let mut program = format!("{defs}\n");
    branches(elements, 0, &mut program);
    if let Ok(filter) = compile_jq(&program, globals, Some(ELEMENT_VAR)) {
        let filter = Arc::new(filter);
        for (index, (_, m)) in (0..).zip(compiled.iter_mut()) {
            m.jq = Jq::Shared { filter: filter.clone(), index };
        }
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
    fn a_program_compiled_with_less_of_the_library_binds_every_name_the_same() {
        let mut sigs = std::collections::BTreeSet::new();
        for def in library(Library::Whole) {
            assert!(sigs.insert((def.name, def.args.len())), "{}/{} is defined twice", def.name, def.args.len());
        }
        let natives = jaq_core::funs::<data::JustLut<Val>>().chain(jaq_std::funs()).chain(jaq_json::funs());
        for (name, args, _) in natives {
            assert!(!sigs.contains(&(name, args.len())), "{name}/{} is both defined and native", args.len());
        }
        // Programs that need each part of the library still compile and run.
        for (program, want) in [
            (".a + 1", json!(2)),                                     // natives and syntax
            ("[.a, 2] | map(. * 10)", json!([10, 20])),               // the core's definitions
            ("{b: .a} | with_entries(.value += 1)", json!({"b": 2})), // the standard library's
            ("[.a] | tojson", json!("[1]")),
        ] {
            let m = Mapping::compile(program).unwrap_or_else(|e| panic!("{program}: {e}"));
            assert_eq!(m.run(&json!({"a": 1})), Ok(want), "{program}");
        }
        let err = Mapping::compile("nosuchfilter(1)").err().unwrap_or_default();
        assert!(err.contains("nosuchfilter"), "{err}");
    }

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
    fn element_programs_share_one_jaq_program_and_keep_their_meaning() {
        let elements: Vec<(String, String)> = [
            ("sex", "$sex[.g]"),
            ("initials", "def initial: .[0:1]; [.name | split(\" \")[] | initial] | join(\"\")"),
            ("year", ".d | split(\"/\") | .[2] # the year only"),
            ("nothing", "empty"),
            ("words", ".name | split(\" \") | length"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let tables = [("sex".to_string(), json!({"1": "male", "2": "female"}))];
        let compile = |tables: &[(String, Value)]| {
            ElementMapping::per_element(
                ".",
                "def unused: 1;",
                tables.iter().map(|(k, v)| (k, v)),
                elements.iter().map(|(k, v)| (k, v)),
            )
            .unwrap()
        };
        let m = compile(&tables);
        let ElementMapping::PerElement { elements: compiled, .. } = &m else { panic!("per-element mapping") };
        let shared: Vec<&Arc<Filter>> = compiled
            .iter()
            .filter_map(|(_, m)| match &m.jq {
                Jq::Shared { filter, .. } => Some(filter),
                Jq::Own(_) => None,
            })
            .collect();
        assert_eq!(shared.len(), elements.len());
        assert!(shared.iter().all(|f| Arc::ptr_eq(f, shared[0])));
        let input = json!({"g": "2", "name": "Nguyễn Thị Lan", "d": "12/05/1990"});
        let expected = json!({"sex": "female", "initials": "NTL", "year": "1990", "words": 3});
        for out in [m.run(&input, &|_| true), m.run_jq(&input, &|_| true)] {
            assert_eq!(Value::Object(out.unwrap().into_iter().collect()), expected);
        }
        // Each element still runs alone, and fails under its own name.
        let only: Vec<(String, Value)> = m.run_jq(&input, &|e| e == "words").unwrap();
        assert_eq!(only, [("words".to_string(), json!(3))]);
        let err = m.run_jq(&json!({"g": "1", "name": 5}), &|e| e == "initials").unwrap_err();
        assert!(err.starts_with("initials: "), "{err}");
        // A code table named like the branch selector keeps a filter per program.
        let clash = compile(&[tables[0].clone(), ("__lgsp_element".to_string(), json!({}))]);
        let ElementMapping::PerElement { elements: compiled, .. } = &clash else { panic!("per-element mapping") };
        assert!(compiled.iter().all(|(_, m)| matches!(m.jq, Jq::Own(_))));
    }

    #[test]
    fn simple_programs_run_without_the_interpreter_and_mean_the_same() {
        let defs = "def dmy: split(\"/\") | \"\\(.[2])-\\(.[1])-\\(.[0])\"; def f(x): x;";
        let globals = Globals::new([(&"t".to_string(), &json!({"1": "one"}))]).unwrap();
        for (code, direct) in [
            (".", true),
            (".a", true),
            (".a.b_2", true),
            ("(.a)", true),
            (".a[0]", true),
            (".[-1]", true),
            (".\"a b\"", true),
            ("$t[.a]", true),
            ("{x: .a, b}", true),
            ("[.a, .b]", true),
            ("[.a[] | {x: .b}]", true),
            ("\"\\(.a)-\\(.b)\"", true),
            (".a // \"none\"", true),
            ("if .a == null then null elif .b != 1 then .b else true end", true),
            (".a and (.b or false) | not", true),
            (".a | split(\"/\")", true),
            (".a | test(\"^[0-9]\")", true),
            (".a | dmy", true),
            (".a?", false),
            ("..", false),
            (".a[]", false),
            ("empty", false),
            (".a, .b", false),
            (".a + 1", false),
            (".a | f(.b)", false),
            (".a | split(\"\")", false),
            ("1.5", false),
            ("@base64", false),
            ("{(.a): 1}", false),
            ("reduce .a[] as $x (0; 1)", false),
        ] {
            let m = Mapping::compile_with(defs, code, &globals).unwrap();
            assert_eq!(m.is_direct(), direct, "{code}");
        }
        let inputs = [
            json!(null),
            json!({}),
            json!({"a": null}),
            json!({"a": {"b_2": 1}, "b": 1}),
            json!({"a": "12/05/1990", "b": "x"}),
            json!({"a": "1", "b": 2.5}),
            json!({"a": [1, {"b": "c"}], "b": [1]}),
            json!({"a": {"k": {"b": 1}}, "b": true}),
            json!({"a": 1.0, "b": 1}),
            json!({"a b": 3, "a": false}),
            json!(5),
            json!("x"),
            json!(true),
            json!([1, 2]),
        ];
        let programs = [
            ".",
            ".a",
            ".a.b_2",
            ".a[0]",
            ".[-1]",
            ".\"a b\"",
            "$t[.a]",
            "{x: .a, b}",
            "[.a, .b]",
            "[.a[] | {x: .b}]",
            "[.a[]]",
            "\"\\(.a)-\\(.b)\"",
            ".a // \"none\"",
            "if .a == null then null elif .b != 1 then .b else true end",
            ".a == .b",
            "if .a == null then 0 else .a end",
            ".a and (.b or false) | not",
            ".a | split(\"/\")",
            ".a | test(\"^[0-9]\")",
            ".a | dmy",
        ];
        for code in programs {
            let m = Mapping::compile_with(defs, code, &globals).unwrap();
            assert!(m.is_direct(), "{code}");
            for input in &inputs {
                assert_eq!(m.run(input), m.run_jq(input), "{code} on {input}");
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
