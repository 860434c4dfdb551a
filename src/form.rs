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

/// Whom a field is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Person {
    Subject,
    HouseholdHead,
    Father,
    Mother,
    Spouse,
    /// The subject or the spouse, whichever is female: the mother of a
    /// child the subject registers.
    ChildMother,
    /// The subject or the spouse, whichever is male.
    ChildFather,
}

impl Person {
    pub fn as_str(self) -> &'static str {
        match self {
            Person::Subject => "subject",
            Person::HouseholdHead => "household_head",
            Person::Father => "father",
            Person::Mother => "mother",
            Person::Spouse => "spouse",
            Person::ChildMother => "child_mother",
            Person::ChildFather => "child_father",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    pub element: String,
    pub person: Person,
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
        let mut seen = BTreeSet::new();
        let mut transforms = BTreeMap::new();
        for (i, f) in doc.fields.iter().enumerate() {
            let at = |s: &str| format!("/fields/{i}{s}");
            if !seen.insert(f.id.as_str()) {
                errors.push(FieldError::new(at("/id"), format!("field id \"{}\" is used twice", f.id)));
            }
            let Some(b) = &f.bind else { continue };
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
            Ok(Form { doc, version, definition: definition.clone(), transforms })
        } else {
            Err(errors)
        }
    }

    pub fn id(&self) -> &str {
        &self.doc.id
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
