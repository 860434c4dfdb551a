//! Form definitions (`schemas/form.json`): the fields a citizen fills in, each
//! bound to a canonical data element about one person, or declared only.

use crate::adapter::mapping::Mapping;
use crate::elements::Elements;
use crate::error::FieldError;
use crate::schema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The person every form is about: the citizen whose ID the request gives.
pub const SUBJECT: &str = "subject";

/// The person who asks, where another fills the form about the subject (the
/// declarant of a death, the requester of a certificate): the portal gives
/// their ID, known from the citizen's login, as `requester_id`.
pub const REQUESTER: &str = "requester";

/// How a form finds one of the persons it is about, as it declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonDecl {
    /// The request gives this person's ID: `requester_id` for `requester`,
    /// `relatives` for any other.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub given: bool,
    /// Found through this person's `element`, a person reference holding a
    /// `citizen_id` (the subject's `father`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element: Option<String>,
    /// Or one of two persons, by what a person's element holds: the child's
    /// mother is the subject if the subject is female, else the spouse.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<String>,
    #[serde(default, rename = "else", skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<String>,
}

/// `person`'s `element` equals `equals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub person: String,
    pub element: String,
    #[schema(value_type = crate::schema::openapi::AnyValue)]
    pub equals: Value,
}

/// How a person is found, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// The request gives the ID.
    Given,
    /// The `citizen_id` in `person`'s `element`.
    Through { person: String, element: String },
    /// `then` when `when` holds, `otherwise` when it does not; nobody when
    /// the element is unknown.
    Either { when: Condition, then: String, otherwise: String },
}

impl Found {
    /// The persons this one is found from.
    pub fn sources(&self) -> Vec<&str> {
        match self {
            Found::Given => Vec::new(),
            Found::Through { person, .. } => vec![person],
            Found::Either { when, then, otherwise } => vec![&when.person, then, otherwise],
        }
    }
}

/// The persons a form without its own `persons` may name, as they were
/// built in: through the subject's links, and the child's parents.
fn built_in(name: &str) -> Option<Found> {
    let through = |element: &str| Found::Through { person: SUBJECT.into(), element: element.into() };
    let parent = |sex: &str| Found::Either {
        when: Condition { person: SUBJECT.into(), element: "sex".into(), equals: Value::String(sex.into()) },
        then: SUBJECT.into(),
        otherwise: "spouse".into(),
    };
    Some(match name {
        SUBJECT => Found::Given,
        "household_head" | "father" | "mother" | "spouse" => through(name),
        "child_mother" => parent("female"),
        "child_father" => parent("male"),
        _ => return None,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    pub element: String,
    /// One of the persons the form declares (`subject` always is).
    pub person: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A jq program applied to the value (after `path`) before it is
    /// released, so a form that asks for less gets less: `.[0:4] | tonumber`
    /// turns a date of birth into the year of birth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FormField {
    pub id: String,
    pub label_vi: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_en: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<Binding>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Procedure {
    pub code: String,
    pub name: String,
    /// Code on the National Public Service Portal (mã thủ tục hành chính).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub national_code: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FormDoc {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_en: Option<String>,
    pub form_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    pub procedure: Procedure,
    pub purposes: Vec<String>,
    /// The persons the form is about besides the subject, and how each is
    /// found. Without it, a form may name the built-in persons
    /// (`household_head`, `father`, `mother`, `spouse`, `child_mother`,
    /// `child_father`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persons: Option<BTreeMap<String, PersonDecl>>,
    pub fields: Vec<FormField>,
}

/// A validated form, current version.
#[derive(Debug, Clone)]
pub struct Form {
    pub doc: FormDoc,
    pub version: i32,
    pub definition: Value,
    /// Compiled `transform`s by field id.
    transforms: BTreeMap<String, Arc<Mapping>>,
    /// Every person the form is about, the subject included, and how each is found.
    pub persons: BTreeMap<String, Found>,
    /// For each person, the elements read to find them: worked out once.
    links: BTreeMap<String, Vec<String>>,
}

impl Form {
    /// Validates a definition. `operations` lists the `adapter.operation`s
    /// of the catalogue with the elements each provides, to check `source`.
    pub fn compile(
        definition: &Value,
        version: i32,
        operations: &BTreeMap<String, BTreeSet<String>>,
        elements: &Elements,
    ) -> Result<Form, Vec<FieldError>> {
        schema::check(schema::form_validator(), definition)?;
        let doc: FormDoc =
            serde_json::from_value(definition.clone()).map_err(|e| vec![FieldError::new("", e.to_string())])?;
        let mut errors = Vec::new();
        let persons = persons_of(&doc, elements, &mut errors);
        let mut seen = BTreeSet::new();
        let mut transforms = BTreeMap::new();
        for (i, f) in doc.fields.iter().enumerate() {
            let at = |s: &str| format!("/fields/{i}{s}");
            if !seen.insert(f.id.as_str()) {
                errors.push(FieldError::new(at("/id"), format!("field id \"{}\" is used twice", f.id)));
            }
            let Some(b) = &f.bind else { continue };
            if !persons.contains_key(&b.person) {
                errors.push(FieldError::new(
                    at("/bind/person"),
                    format!("\"{}\" is not a person this form declares (in persons)", b.person),
                ));
            }
            if !elements.is_element(&b.element) {
                errors.push(FieldError::new(at("/bind/element"), format!("unknown data element \"{}\"", b.element)));
                continue;
            }
            if let Some(p) = &b.path {
                if !elements.has_path(&b.element, p) {
                    errors.push(FieldError::new(
                        at("/bind/path"),
                        format!("element \"{}\" has nothing at \"{p}\"", b.element),
                    ));
                }
            }
            if let Some(t) = &b.transform {
                match Mapping::compile(t) {
                    Ok(m) => {
                        transforms.insert(f.id.clone(), Arc::new(m));
                    }
                    Err(e) => errors.push(FieldError::new(at("/bind/transform"), e)),
                }
            }
            if let Some(s) = &b.source {
                match operations.get(s) {
                    None => errors.push(FieldError::new(at("/bind/source"), format!("unknown operation \"{s}\""))),
                    Some(els) if !els.contains(&b.element) => errors.push(FieldError::new(
                        at("/bind/source"),
                        format!("operation \"{s}\" does not provide \"{}\"", b.element),
                    )),
                    Some(_) => {}
                }
            }
        }
        if errors.is_empty() {
            let links = persons.keys().map(|p| (p.clone(), links_of(&persons, p))).collect();
            Ok(Form { doc, version, definition: definition.clone(), transforms, persons, links })
        } else {
            Err(errors)
        }
    }

    pub fn id(&self) -> &str {
        &self.doc.id
    }

    /// The elements read to find `person`, which a partner must be granted
    /// to receive anything of that person.
    pub fn links(&self, person: &str) -> &[String] {
        self.links.get(person).map_or(&[], Vec::as_slice)
    }

    /// The value a field releases: the element's value, through the field's
    /// `transform` if it has one.
    pub fn release(&self, field: &str, value: &Value) -> Result<Value, String> {
        match self.transforms.get(field) {
            Some(t) => t.run(value),
            None => Ok(value.clone()),
        }
    }

    /// Fields bound to a data element / declarable fields.
    pub fn ceiling(&self) -> (usize, usize) {
        (self.doc.fields.iter().filter(|f| f.bind.is_some()).count(), self.doc.fields.len())
    }
}

/// The elements read to find `person` (through whom, by what), which a
/// partner must be granted to receive anything of that person.
fn links_of(persons: &BTreeMap<String, Found>, person: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![person];
    let mut seen = BTreeSet::new();
    while let Some(p) = todo.pop() {
        if !seen.insert(p) {
            continue;
        }
        match persons.get(p) {
            Some(Found::Through { person, element }) => {
                out.push(element.clone());
                todo.push(person);
            }
            Some(Found::Either { when, then, otherwise }) => {
                out.push(when.element.clone());
                todo.extend([when.person.as_str(), then, otherwise]);
            }
            Some(Found::Given) | None => {}
        }
    }
    out
}

/// The persons a form is about and how each is found, checked: each found
/// from persons the form has, through elements that hold a person, and none
/// through itself.
fn persons_of(doc: &FormDoc, elements: &Elements, errors: &mut Vec<FieldError>) -> BTreeMap<String, Found> {
    let mut persons = BTreeMap::from([(SUBJECT.to_string(), Found::Given)]);
    match &doc.persons {
        Some(declared) => {
            for (name, d) in declared {
                let at = format!("/persons/{name}");
                if name == SUBJECT {
                    errors
                        .push(FieldError::new(at, "the subject is always the request's citizen_id; do not declare it"));
                    continue;
                }
                let found = match d {
                    PersonDecl {
                        given: true,
                        through: None,
                        element: None,
                        when: None,
                        then: None,
                        otherwise: None,
                    } => Found::Given,
                    PersonDecl {
                        given: false,
                        through: Some(p),
                        element: Some(e),
                        when: None,
                        then: None,
                        otherwise: None,
                    } => Found::Through { person: p.clone(), element: e.clone() },
                    PersonDecl {
                        given: false,
                        through: None,
                        element: None,
                        when: Some(c),
                        then: Some(t),
                        otherwise: Some(o),
                    } => Found::Either { when: c.clone(), then: t.clone(), otherwise: o.clone() },
                    _ => {
                        errors.push(FieldError::new(
                            at,
                            "declare exactly one way to find the person: {\"given\": true}, {\"through\": person, \
                             \"element\": …}, or {\"if\": {person, element, equals}, \"then\": person, \"else\": person}",
                        ));
                        continue;
                    }
                };
                persons.insert(name.clone(), found);
            }
        }
        None => {
            // The built-in persons the fields name, and those they are found from.
            let mut todo: Vec<String> =
                doc.fields.iter().filter_map(|f| f.bind.as_ref()).map(|b| b.person.clone()).collect();
            while let Some(name) = todo.pop() {
                if persons.contains_key(&name) {
                    continue;
                }
                if let Some(found) = built_in(&name) {
                    todo.extend(found.sources().into_iter().map(String::from));
                    persons.insert(name, found);
                }
            }
        }
    }
    for (name, found) in &persons {
        let at = format!("/persons/{name}");
        for source in found.sources() {
            if !persons.contains_key(source) {
                errors.push(FieldError::new(&at, format!("\"{source}\" is not a person this form declares")));
            }
        }
        match found {
            Found::Through { element, .. }
                if !elements.has_path(element, "/citizen_id") || !elements.is_element(element) =>
            {
                errors.push(FieldError::new(
                    format!("{at}/element"),
                    format!("\"{element}\" is not an element that holds a person's citizen_id"),
                ));
            }
            Found::Either { when, .. } if !elements.is_element(&when.element) => {
                errors.push(FieldError::new(
                    format!("{at}/if/element"),
                    format!("unknown data element \"{}\"", when.element),
                ));
            }
            _ => {}
        }
        // Found through itself, directly or through others?
        let mut seen = BTreeSet::new();
        let mut next: Vec<&str> = found.sources();
        while let Some(p) = next.pop() {
            if p == name {
                errors.push(FieldError::new(&at, "the person is found through itself, directly or through others"));
                break;
            }
            if seen.insert(p) {
                next.extend(persons.get(p).map(Found::sources).unwrap_or_default());
            }
        }
    }
    persons
}

/// The forms shipped in `schemas/forms/`, embedded in the binary.
pub const SHIPPED: [(&str, &str); 6] = [
    ("ct01", include_str!("../schemas/forms/ct01.json")),
    ("birth_registration", include_str!("../schemas/forms/birth_registration.json")),
    ("tk1_ts", include_str!("../schemas/forms/tk1_ts.json")),
    ("death_registration", include_str!("../schemas/forms/death_registration.json")),
    ("marital_status_certificate", include_str!("../schemas/forms/marital_status_certificate.json")),
    ("health_card_reissue", include_str!("../schemas/forms/health_card_reissue.json")),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(bind: Value) -> Value {
        json!({"id": "year_form", "title": "F", "form_code": "F-1", "procedure": {"code": "year_form", "name": "F"},
               "purposes": ["year_form"], "fields": [{"id": "yob", "label_vi": "Năm sinh", "type": "year",
               "required": true, "bind": bind}]})
    }

    #[test]
    fn a_transform_releases_only_what_the_field_asks_for() {
        let f = Form::compile(
            &form(json!({"element": "date_of_birth", "person": "mother", "transform": ".[0:4] | tonumber"})),
            1,
            &BTreeMap::new(),
            &Elements::shipped(),
        )
        .unwrap();
        assert_eq!(f.release("yob", &json!("1990-07-14")).unwrap(), json!(1990));
        assert!(f.release("yob", &json!({"not": "a date"})).is_err(), "a failing transform is an error, not a panic");
        let errors = Form::compile(
            &form(json!({"element": "date_of_birth", "person": "mother", "transform": ".[0:4 | tonumber"})),
            1,
            &BTreeMap::new(),
            &Elements::shipped(),
        )
        .unwrap_err();
        assert_eq!(errors[0].pointer, "/fields/0/bind/transform");
    }
}
