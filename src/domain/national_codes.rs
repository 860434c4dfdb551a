//! How the province's dossiers map to the national public-service portal's
//! codes: the one-stop system's local statuses and channels to the portal's
//! statuses (1 to 10) and channels (1 to 3), and each linked dossier's state
//! to a local status. Declared in `schemas/flows/national-statuses.json`,
//! which the binary embeds; a province whose one-stop system speaks other
//! words names its own file (`portal.statuses_file`), checked at start.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The map, as declared.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NationalCodes {
    #[serde(default)]
    pub description: String,
    pub statuses: BTreeMap<String, i64>,
    pub channels: BTreeMap<String, i64>,
    /// A linked dossier's state to a local status.
    pub linked: BTreeMap<String, String>,
    /// The local channel of linked dossiers (filed through portals).
    pub linked_channel: String,
}

/// The states a linked dossier takes, each of which the map must name.
pub const LINKED_STATES: [&str; 9] =
    ["received", "processing", "supplement", "withdrawing", "withdrawn", "done", "partly_done", "refused", "failed"];

const SHIPPED: &str = include_str!("../../schemas/flows/national-statuses.json");

impl NationalCodes {
    /// Reads and checks a map: every status 1 to 10, every channel 1 to 3,
    /// every linked state named and mapped to a status the map holds.
    pub fn parse(text: &str) -> Result<NationalCodes, String> {
        let codes: NationalCodes = serde_json::from_str(text).map_err(|e| format!("not the map's shape: {e}"))?;
        let mut problems = Vec::new();
        for (word, code) in &codes.statuses {
            if !(1..=10).contains(code) {
                problems.push(format!("statuses.{word} is {code}; the portal's statuses are 1 to 10"));
            }
        }
        for (word, code) in &codes.channels {
            if !(1..=3).contains(code) {
                problems.push(format!("channels.{word} is {code}; the portal's channels are 1 to 3"));
            }
        }
        for state in LINKED_STATES {
            match codes.linked.get(state) {
                None => problems.push(format!("linked.{state} is missing: name the local status of that state")),
                Some(s) if !codes.statuses.contains_key(s) => {
                    problems.push(format!("linked.{state} is \"{s}\", which statuses does not hold"))
                }
                Some(_) => {}
            }
        }
        if !codes.channels.contains_key(&codes.linked_channel) {
            problems.push(format!("linked_channel \"{}\" is not one of channels", codes.linked_channel));
        }
        if problems.is_empty() {
            Ok(codes)
        } else {
            Err(problems.join("; "))
        }
    }

    /// The local word of a national status code (the code itself if none).
    pub fn status_name(&self, code: i64) -> String {
        name_of(&self.statuses, code)
    }

    /// The local word of a national channel code (the code itself if none).
    pub fn channel_name(&self, code: i64) -> String {
        name_of(&self.channels, code)
    }

    pub fn read(path: &std::path::Path) -> Result<NationalCodes, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        NationalCodes::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn name_of(map: &BTreeMap<String, i64>, code: i64) -> String {
    map.iter().find(|(_, c)| **c == code).map_or_else(|| code.to_string(), |(word, _)| word.clone())
}

static CODES: OnceLock<NationalCodes> = OnceLock::new();

/// Uses the map in `path` (or the shipped one) from now on; a process uses
/// one map, so a second, different one is refused.
pub fn install(path: Option<&std::path::Path>) -> Result<(), String> {
    let codes = match path {
        Some(p) => NationalCodes::read(p)?,
        None => NationalCodes::parse(SHIPPED)?,
    };
    let held = CODES.get_or_init(|| codes.clone());
    if *held != codes {
        return Err("this process already uses another map of national codes".into());
    }
    Ok(())
}

/// The map in use: the one installed, or the shipped one.
#[allow(clippy::expect_used, reason = "the shipped map is embedded at build time, and a test reads it")]
pub fn national_codes() -> &'static NationalCodes {
    CODES.get_or_init(|| NationalCodes::parse(SHIPPED).expect("the shipped map is valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_map_reads_and_a_wrong_one_is_refused_with_each_problem() {
        let shipped = NationalCodes::parse(SHIPPED).unwrap();
        assert_eq!(shipped.statuses["returned"], 10);
        let mut wrong: serde_json::Value = serde_json::from_str(SHIPPED).unwrap();
        wrong["statuses"]["archived"] = serde_json::json!(11);
        wrong["linked"]["done"] = serde_json::json!("finished");
        wrong["linked"].as_object_mut().unwrap().remove("failed");
        let e = NationalCodes::parse(&wrong.to_string()).unwrap_err();
        assert!(e.contains("statuses.archived is 11"), "{e}");
        assert!(e.contains("linked.done is \"finished\""), "{e}");
        assert!(e.contains("linked.failed is missing"), "{e}");
    }
}
