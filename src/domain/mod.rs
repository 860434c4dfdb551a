//! Domain types shared by the gateway and the mock registries.

pub mod admin_units;
pub mod calendar;
pub mod citizen_id;
pub mod credential;
pub mod dossier_code;
pub mod json;
pub mod national_codes;
pub mod partner;

pub use admin_units::AdminUnits;
pub use citizen_id::{CitizenId, CitizenIdError, Sex};
