//! Direct evaluation of simple jq programs over `serde_json` values.
//!
//! jaq stays the mapping language and the reference for what a program means:
//! every program is compiled by jaq. Most element programs, though, are small
//! (`.ngay_sinh | dmy`, `$sex[.gioi_tinh]`, `{code: .dan_toc, name: ...}`), and
//! jaq's interpreter spends most of their time on its own machinery (boxed
//! iterators, value conversions) rather than on the work. When a program stays
//! within the fragment below, it is also compiled here into a tree evaluated
//! directly on the registry's parsed answer:
//!
//! - `.`, paths of constant keys and integer indices (`.a.b`, `.[2]`, `$t[.k]`),
//! - string, integer, `null`, `true` and `false` literals, string interpolation,
//! - objects with constant keys, arrays of single values (`[a, b]`) and
//!   collected iterations (`[.a[] | f]`),
//! - `|`, `//`, `and`, `or`, `==`, `!=`, `if ... then ... elif ... else ... end`,
//! - `not`, `split($string)` and `test($regex)` with constant arguments, and
//!   calls to argument-less `defs`, inlined.
//!
//! Anything else (generators, `reduce`, `try`, user functions with arguments,
//! arithmetic, ...) keeps the program on jaq. At run time, a case whose jq
//! meaning the evaluator does not reproduce exactly (an error, a float in a
//! comparison or an interpolation, iterating a non-array) gives
//! [`Unsupported`], and the caller runs the program on jaq instead, so results
//! and error messages are always jaq's. A property test checks both agree on
//! every shipped program.

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Term};
use jaq_core::ops::Cmp;
use jaq_core::path::{Opt, Part};
use regex_bites::bytes::{Regex, RegexBuilder};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The evaluator cannot give jaq's answer for this input: run jaq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

type Out<'a> = Result<Cow<'a, Value>, Unsupported>;

/// A program compiled for direct evaluation.
#[derive(Debug)]
pub enum Expr {
    Id,
    Lit(Value),
    /// String interpolation: literal pieces and interpolated terms.
    Interp(Vec<Piece>),
    /// `base[key]`, the key evaluated on the same input as the base.
    Index(Box<Expr>, Box<Expr>),
    /// A global variable (`$name`), by position.
    Var(usize),
    Pipe(Box<Expr>, Box<Expr>),
    Alt(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Eq(Box<Expr>, Box<Expr>, bool),
    If(Vec<(Expr, Expr)>, Box<Expr>),
    Obj(Vec<(String, Expr)>),
    Arr(Vec<Expr>),
    /// `[source[] | f]`.
    Collect(Box<Expr>, Box<Expr>),
    Not,
    Split(String),
    Test(Box<Regex>),
}

#[derive(Debug)]
pub enum Piece {
    Text(String),
    Term(Expr),
}

/// What a program may refer to: the definitions before it and the global
/// variables' names, in the order their values are passed to [`Expr::eval`].
struct Scope<'s> {
    defs: &'s [Def<&'s str>],
    globals: &'s [String],
}

/// Inlined definitions nest at most this deep (a recursive one never compiles).
const MAX_INLINE: usize = 16;

impl Expr {
    /// Compiles jq source `code`; `None` when it is outside the fragment.
    pub fn compile(defs: &str, code: &str, globals: &[String]) -> Option<Expr> {
        let defs = if defs.trim().is_empty() { Vec::new() } else { jaq_core::load::parse(defs, |p| p.defs())? };
        let term = jaq_core::load::parse(code, |p| p.term())?;
        Expr::from_term(&term, &Scope { defs: &defs, globals }, 0)
    }

    fn from_term(t: &Term<&str>, s: &Scope, depth: usize) -> Option<Expr> {
        let sub = |t: &Term<&str>| Expr::from_term(t, s, depth).map(Box::new);
        Some(match t {
            Term::Id => Expr::Id,
            Term::Num(n) => Expr::Lit(Value::from(n.parse::<i64>().ok()?)),
            Term::Neg(n) => match &**n {
                Term::Num(n) => Expr::Lit(Value::from(n.parse::<i64>().ok()?.checked_neg()?)),
                _ => return None,
            },
            Term::Str(None, parts) => {
                let mut pieces = Vec::new();
                for part in parts {
                    match part {
                        StrPart::Str(text) => push_text(&mut pieces, text),
                        StrPart::Char(c) => push_text(&mut pieces, c.encode_utf8(&mut [0; 4])),
                        StrPart::Term(t) => pieces.push(Piece::Term(Expr::from_term(t, s, depth)?)),
                    }
                }
                match pieces.as_slice() {
                    [] => Expr::Lit(Value::from("")),
                    [Piece::Text(text)] => Expr::Lit(Value::from(text.as_str())),
                    _ => Expr::Interp(pieces),
                }
            }
            Term::Arr(None) => Expr::Arr(Vec::new()),
            Term::Arr(Some(inner)) => array(inner, s, depth)?,
            Term::Obj(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    let key = constant_string(key)?;
                    let value = match value {
                        Some(v) => Expr::from_term(v, s, depth)?,
                        // `{a}` is `{a: .a}`.
                        None => Expr::Index(Box::new(Expr::Id), Box::new(Expr::Lit(Value::from(key.as_str())))),
                    };
                    out.push((key, value));
                }
                Expr::Obj(out)
            }
            Term::BinOp(l, op, r) => match op {
                BinaryOp::Pipe(None) => Expr::Pipe(sub(l)?, sub(r)?),
                BinaryOp::Alt => Expr::Alt(sub(l)?, sub(r)?),
                BinaryOp::And => Expr::And(sub(l)?, sub(r)?),
                BinaryOp::Or => Expr::Or(sub(l)?, sub(r)?),
                BinaryOp::Cmp(Cmp::Eq) => Expr::Eq(sub(l)?, sub(r)?, true),
                BinaryOp::Cmp(Cmp::Ne) => Expr::Eq(sub(l)?, sub(r)?, false),
                _ => return None,
            },
            Term::IfThenElse(branches, otherwise) => {
                let mut out = Vec::with_capacity(branches.len());
                for (cond, then) in branches {
                    out.push((Expr::from_term(cond, s, depth)?, Expr::from_term(then, s, depth)?));
                }
                let otherwise = match otherwise {
                    Some(e) => sub(e)?,
                    None => Box::new(Expr::Id),
                };
                Expr::If(out, otherwise)
            }
            Term::Var(name) => {
                let name = name.strip_prefix('$')?;
                Expr::Var(s.globals.iter().position(|g| g == name)?)
            }
            Term::Path(base, path) => {
                let mut e = Expr::from_term(base, s, depth)?;
                for (part, opt) in &path.0 {
                    match (part, opt) {
                        (Part::Index(key), Opt::Essential) => e = Expr::Index(Box::new(e), sub(key)?),
                        _ => return None,
                    }
                }
                e
            }
            Term::Call(name, args) => call(name, args, s, depth)?,
            _ => return None,
        })
    }
}

fn push_text(pieces: &mut Vec<Piece>, text: &str) {
    match pieces.last_mut() {
        Some(Piece::Text(t)) => t.push_str(text),
        _ => pieces.push(Piece::Text(text.to_string())),
    }
}

/// A string literal without interpolation.
fn constant_string(t: &Term<&str>) -> Option<String> {
    let Term::Str(None, parts) = t else { return None };
    let mut out = String::new();
    for part in parts {
        match part {
            StrPart::Str(text) => out.push_str(text),
            StrPart::Char(c) => out.push(*c),
            StrPart::Term(_) => return None,
        }
    }
    Some(out)
}

/// `[a, b, ...]` of single values, or `[source[] | f]` / `[source[]]`.
fn array(inner: &Term<&str>, s: &Scope, depth: usize) -> Option<Expr> {
    let iterated = |t: &Term<&str>| -> Option<Expr> {
        let Term::Path(base, path) = t else { return None };
        let (last, rest) = path.0.split_last()?;
        if !matches!(last, (Part::Range(None, None), Opt::Essential)) {
            return None;
        }
        let mut e = Expr::from_term(base, s, depth)?;
        for (part, opt) in rest {
            match (part, opt) {
                (Part::Index(key), Opt::Essential) => {
                    e = Expr::Index(Box::new(e), Box::new(Expr::from_term(key, s, depth)?))
                }
                _ => return None,
            }
        }
        Some(e)
    };
    if let Some(source) = iterated(inner) {
        return Some(Expr::Collect(Box::new(source), Box::new(Expr::Id)));
    }
    if let Term::BinOp(l, BinaryOp::Pipe(None), r) = inner {
        if let Some(source) = iterated(l) {
            return Some(Expr::Collect(Box::new(source), Box::new(Expr::from_term(r, s, depth)?)));
        }
    }
    let mut items = Vec::new();
    let mut rest = inner;
    while let Term::BinOp(l, BinaryOp::Comma, r) = rest {
        items.push(Expr::from_term(l, s, depth)?);
        rest = r;
    }
    items.push(Expr::from_term(rest, s, depth)?);
    Some(Expr::Arr(items))
}

fn call(name: &str, args: &[Term<&str>], s: &Scope, depth: usize) -> Option<Expr> {
    // A definition of the program's shadows the built-in of the same name and arity.
    // A definition's body sees the definitions up to and including itself.
    if let Some(at) = s.defs.iter().rposition(|d| d.name == name && d.args.len() == args.len()) {
        if !args.is_empty() || depth >= MAX_INLINE {
            return None;
        }
        let inner = Scope { defs: &s.defs[..=at], globals: s.globals };
        return Expr::from_term(&s.defs[at].body, &inner, depth + 1);
    }
    Some(match (name, args) {
        ("null", []) => Expr::Lit(Value::Null),
        ("true", []) => Expr::Lit(Value::Bool(true)),
        ("false", []) => Expr::Lit(Value::Bool(false)),
        ("not", []) => Expr::Not,
        ("split", [sep]) => {
            let sep = constant_string(sep)?;
            // jaq splits on "" into characters; left to jaq.
            if sep.is_empty() {
                return None;
            }
            Expr::Split(sep)
        }
        ("test", [re]) => Expr::Test(Box::new(RegexBuilder::new(&constant_string(re)?).build().ok()?)),
        _ => return None,
    })
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

/// `base[key]` with jaq's meaning for the cases it reproduces.
fn index<'a>(base: Cow<'a, Value>, key: &Value) -> Out<'a> {
    let pick = |v: &Value| -> Result<Option<usize>, Unsupported> {
        match (v, key) {
            (Value::Array(a), Value::Number(n)) => {
                let i = n.as_i64().ok_or(Unsupported)?;
                let len = a.len() as i64;
                let i = if i < 0 { i + len } else { i };
                Ok((0..len).contains(&i).then_some(i as usize))
            }
            _ => Err(Unsupported),
        }
    };
    match (base, key) {
        (Cow::Borrowed(Value::Null) | Cow::Owned(Value::Null), _) => Ok(Cow::Owned(Value::Null)),
        (Cow::Borrowed(Value::Object(o)), Value::String(k)) => {
            Ok(o.get(k).map(Cow::Borrowed).unwrap_or(Cow::Owned(Value::Null)))
        }
        (Cow::Owned(Value::Object(mut o)), Value::String(k)) => Ok(Cow::Owned(o.remove(k).unwrap_or(Value::Null))),
        (Cow::Borrowed(v @ Value::Array(a)), _) => {
            Ok(pick(v)?.map(|i| Cow::Borrowed(&a[i])).unwrap_or(Cow::Owned(Value::Null)))
        }
        (Cow::Owned(v @ Value::Array(_)), _) => {
            let i = pick(&v)?;
            let Value::Array(mut a) = v else { unreachable!("matched as an array") };
            Ok(Cow::Owned(i.map(|i| a.swap_remove(i)).unwrap_or(Value::Null)))
        }
        _ => Err(Unsupported),
    }
}

/// jq's `==` where it is plain equality: values of different kinds differ;
/// numbers are compared when both are integers, arrays and objects not at all
/// (jaq compares the numbers inside them numerically).
fn equal(a: &Value, b: &Value) -> Result<bool, Unsupported> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Ok(x == y),
            _ => Err(Unsupported),
        },
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => Err(Unsupported),
        (Value::Null, Value::Null) => Ok(true),
        (Value::Bool(x), Value::Bool(y)) => Ok(x == y),
        (Value::String(x), Value::String(y)) => Ok(x == y),
        _ => Ok(false),
    }
}

impl Expr {
    /// Evaluates on `input` with the global variables' values.
    pub fn eval<'a>(&'a self, input: &'a Value, globals: &'a [Value]) -> Out<'a> {
        match self {
            Expr::Id => Ok(Cow::Borrowed(input)),
            Expr::Lit(v) => Ok(Cow::Borrowed(v)),
            Expr::Var(i) => Ok(Cow::Borrowed(&globals[*i])),
            Expr::Index(base, key) => {
                let key = key.eval(input, globals)?;
                index(base.eval(input, globals)?, &key)
            }
            Expr::Pipe(l, r) => match l.eval(input, globals)? {
                Cow::Borrowed(v) => r.eval(v, globals),
                Cow::Owned(v) => Ok(Cow::Owned(r.eval(&v, globals)?.into_owned())),
            },
            Expr::Alt(l, r) => {
                let v = l.eval(input, globals)?;
                if truthy(&v) {
                    Ok(v)
                } else {
                    r.eval(input, globals)
                }
            }
            Expr::And(l, r) => {
                let b = truthy(&*l.eval(input, globals)?) && truthy(&*r.eval(input, globals)?);
                Ok(Cow::Owned(Value::Bool(b)))
            }
            Expr::Or(l, r) => {
                let b = truthy(&*l.eval(input, globals)?) || truthy(&*r.eval(input, globals)?);
                Ok(Cow::Owned(Value::Bool(b)))
            }
            Expr::Eq(l, r, want) => {
                // jaq evaluates the right-hand side first; neither has effects here.
                let (a, b) = (l.eval(input, globals)?, r.eval(input, globals)?);
                Ok(Cow::Owned(Value::Bool(equal(&a, &b)? == *want)))
            }
            Expr::If(branches, otherwise) => {
                for (cond, then) in branches {
                    if truthy(&*cond.eval(input, globals)?) {
                        return then.eval(input, globals);
                    }
                }
                otherwise.eval(input, globals)
            }
            Expr::Obj(entries) => {
                let mut out = Map::new();
                for (k, e) in entries {
                    out.insert(k.clone(), e.eval(input, globals)?.into_owned());
                }
                Ok(Cow::Owned(Value::Object(out)))
            }
            Expr::Arr(items) => {
                let out: Result<Vec<Value>, Unsupported> =
                    items.iter().map(|e| e.eval(input, globals).map(Cow::into_owned)).collect();
                Ok(Cow::Owned(Value::Array(out?)))
            }
            Expr::Collect(source, f) => {
                let source = source.eval(input, globals)?;
                let items: Vec<&Value> = match &*source {
                    Value::Array(a) => a.iter().collect(),
                    Value::Object(o) => o.values().collect(),
                    _ => return Err(Unsupported),
                };
                let out: Result<Vec<Value>, Unsupported> =
                    items.into_iter().map(|v| f.eval(v, globals).map(Cow::into_owned)).collect();
                Ok(Cow::Owned(Value::Array(out?)))
            }
            Expr::Interp(pieces) => {
                let mut out = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Term(e) => match &*e.eval(input, globals)? {
                            Value::String(s) => out.push_str(s),
                            Value::Null => out.push_str("null"),
                            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                            Value::Number(n) => out.push_str(&n.as_i64().ok_or(Unsupported)?.to_string()),
                            _ => return Err(Unsupported),
                        },
                    }
                }
                Ok(Cow::Owned(Value::String(out)))
            }
            Expr::Not => Ok(Cow::Owned(Value::Bool(!truthy(input)))),
            Expr::Split(sep) => match input {
                Value::String(s) if s.is_empty() => Ok(Cow::Owned(Value::Array(Vec::new()))),
                Value::String(s) => Ok(Cow::Owned(Value::Array(s.split(sep.as_str()).map(Value::from).collect()))),
                _ => Err(Unsupported),
            },
            Expr::Test(re) => match input {
                Value::String(s) => Ok(Cow::Owned(Value::Bool(re.is_match(s.as_bytes())))),
                _ => Err(Unsupported),
            },
        }
    }
}
