//! Flows (`schemas/flow.json`): a group of linked procedures (Decree
//! 63/2024/NĐ-CP) as a steward declares it. Each step files an application
//! with a registry through an adapter's write operation, reads it back with
//! the status operation until it is decided, and answers a supplement request
//! with the supplement operation. A step starts once the steps it comes
//! `after` are done, fed with their results; steps whose predecessors are the
//! same run in parallel.

use crate::adapter::mapping::Mapping;
use crate::adapter::OperationKind;
use crate::elements::Elements;
use crate::error::FieldError;
use crate::schema;
use jsonschema::Validator;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowDoc {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title_en: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub legal_basis: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<String>,
    pub purpose: String,
    /// The group's code in the national database of procedures, under which
    /// its dossiers are synced to the national portal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procedure_code: Option<String>,
    pub receiving_agency: String,
    #[serde(default = "default_deadline")]
    pub deadline_days: u32,
    #[serde(default = "one")]
    pub min_procedures: usize,
    pub declaration_schema: Value,
    pub subject: String,
    pub steps: Vec<StepDoc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepDoc {
    pub id: String,
    pub title: String,
    pub adapter: String,
    pub submit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplement: Option<String>,
    pub request: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    #[serde(default)]
    pub optional: bool,
    #[serde(default = "default_deadline")]
    pub deadline_days: u32,
}

fn default_deadline() -> u32 {
    3
}
fn one() -> usize {
    1
}

/// A compiled step.
pub struct Step {
    pub doc: StepDoc,
    pub request: Mapping,
}

/// A compiled flow.
pub struct Flow {
    pub version: i32,
    pub doc: FlowDoc,
    pub declaration: Validator,
    pub subject: Mapping,
    pub steps: Vec<Step>,
}

/// The shipped flows: Decree 63's two groups.
pub const SHIPPED: [(&str, &str); 2] = [
    ("birth_residence_insurance", include_str!("../schemas/flows/birth_residence_insurance.json")),
    ("death_residence_allowance", include_str!("../schemas/flows/death_residence_allowance.json")),
];

fn problem(pointer: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError { pointer: pointer.into(), message: message.into() }
}

impl Flow {
    /// Validates and compiles a flow against the adapters' operations
    /// (`adapter.operation` → what it does) and the forms there are.
    pub fn compile(
        doc: &Value,
        version: i32,
        operations: &BTreeMap<String, OperationKind>,
        forms: &BTreeSet<String>,
        elements: &Elements,
    ) -> Result<Flow, Vec<FieldError>> {
        schema::check(schema::flow_validator(), doc)?;
        let flow: FlowDoc = serde_json::from_value(doc.clone()).map_err(|e| vec![problem("", e.to_string())])?;
        let mut errors = Vec::new();
        if let Some(form) = flow.form.as_ref().filter(|f| !forms.contains(*f)) {
            errors.push(problem("/form", format!("no form \"{form}\"; publish it first")));
        }
        let declaration = elements
            .compile(&flow.declaration_schema)
            .map_err(|e| errors.push(problem("/declaration_schema", format!("not a valid JSON Schema: {e}"))))
            .ok();
        let subject = Mapping::compile(&flow.subject).map_err(|e| errors.push(problem("/subject", e))).ok();
        let mut seen = BTreeSet::new();
        let mut steps = Vec::new();
        for (i, step) in flow.steps.iter().enumerate() {
            let at = |field: &str| format!("/steps/{i}/{field}");
            if !seen.insert(step.id.as_str()) {
                errors.push(problem(at("id"), format!("step \"{}\" is declared twice", step.id)));
            }
            for (j, before) in step.after.iter().enumerate() {
                if !flow.steps[..i].iter().any(|s| &s.id == before) {
                    errors.push(problem(
                        at(&format!("after/{j}")),
                        format!("\"{before}\" is not a step declared before this one (steps are listed in order)"),
                    ));
                }
            }
            let kinds = [
                ("submit", Some(&step.submit), OperationKind::Write),
                ("status", step.status.as_ref(), OperationKind::Status),
                ("supplement", step.supplement.as_ref(), OperationKind::Write),
            ];
            for (field, op, wanted) in kinds {
                let Some(op) = op else { continue };
                let name = format!("{}.{op}", step.adapter);
                match operations.get(&name) {
                    None => errors.push(problem(at(field), format!("no operation \"{name}\" in the adapters"))),
                    Some(kind) if *kind != wanted => errors.push(problem(
                        at(field),
                        format!("\"{name}\" is a {kind:?} operation; a step's {field} is a {wanted:?} operation")
                            .to_lowercase(),
                    )),
                    Some(_) => {}
                }
            }
            match Mapping::compile(&step.request) {
                Ok(request) => steps.push(Step { doc: step.clone(), request }),
                Err(e) => errors.push(problem(at("request"), e)),
            }
        }
        let required = flow.steps.iter().filter(|s| !s.optional).count();
        if flow.min_procedures > flow.steps.len() {
            errors.push(problem("/min_procedures", "more procedures than the flow has steps"));
        }
        if required == 0 {
            errors.push(problem("/steps", "at least one step is not optional: the one the others follow"));
        }
        match (errors.is_empty(), declaration, subject) {
            (true, Some(declaration), Some(subject)) => Ok(Flow { version, doc: flow, declaration, subject, steps }),
            _ => Err(errors),
        }
    }

    pub fn id(&self) -> &str {
        &self.doc.id
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.doc.id == id)
    }

    /// The procedures a dossier carries: those chosen (every step when none
    /// are named), with the steps no one may leave out and those a chosen
    /// step comes after. Refused, with why, when the choice breaks the
    /// group's rules.
    pub fn choose(&self, chosen: Option<&[String]>) -> Result<Vec<String>, FieldError> {
        let Some(chosen) = chosen else {
            return Ok(self.steps.iter().map(|s| s.doc.id.clone()).collect());
        };
        let mut set = BTreeSet::new();
        for (i, id) in chosen.iter().enumerate() {
            if self.step(id).is_none() {
                let known: Vec<&str> = self.steps.iter().map(|s| s.doc.id.as_str()).collect();
                return Err(FieldError::new(
                    format!("/procedures/{i}"),
                    format!("\"{id}\" is not a procedure of flow {}; it has {}", self.id(), known.join(", ")),
                ));
            }
            set.insert(id.as_str());
        }
        for s in self.steps.iter().filter(|s| !s.doc.optional) {
            if !set.contains(s.doc.id.as_str()) {
                return Err(FieldError::new(
                    "/procedures",
                    format!("\"{}\" ({}) cannot be left out of flow {}", s.doc.id, s.doc.title, self.id()),
                ));
            }
        }
        for s in self.steps.iter().filter(|s| set.contains(s.doc.id.as_str())) {
            if let Some(missing) = s.doc.after.iter().find(|a| !set.contains(a.as_str())) {
                return Err(FieldError::new(
                    "/procedures",
                    format!("\"{}\" needs the result of \"{missing}\"; choose both", s.doc.id),
                ));
            }
        }
        if set.len() < self.doc.min_procedures {
            return Err(FieldError::new(
                "/procedures",
                format!(
                    "flow {} carries at least {} procedures together; {} chosen",
                    self.id(),
                    self.doc.min_procedures,
                    set.len()
                ),
            ));
        }
        Ok(self.steps.iter().filter(|s| set.contains(s.doc.id.as_str())).map(|s| s.doc.id.clone()).collect())
    }

    /// The citizen the dossier is about, from the declaration.
    pub fn subject_of(&self, declaration: &Value, requester_id: &str) -> Option<String> {
        let input = json!({ "declaration": declaration, "requester_id": requester_id });
        self.subject.run(&input).ok().and_then(|v| v.as_str().map(str::to_string))
    }
}
