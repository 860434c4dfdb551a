//! Administrative units before and after the 1 July 2025 reorganisation, and
//! the crosswalk from legacy (province, district, ward) codes to the current
//! two-level (province, ward) units. The data (General Statistics Office codes)
//! is embedded from `data/admin-units/`.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::OnceLock;

const UNITS_2025: &str = include_str!("../../data/admin-units/units_2025.csv");
const UNITS_LEGACY: &str = include_str!("../../data/admin-units/units_legacy.csv");
const CROSSWALK: &str = include_str!("../../data/admin-units/crosswalk_legacy_to_2025.csv");

/// A current (2025) ward, commune or special zone.
#[derive(Debug, Clone)]
pub struct Ward {
    pub province_code: &'static str,
    pub province_name: &'static str,
    pub ward_code: &'static str,
    pub ward_name: &'static str,
    pub ward_type: &'static str,
}

/// A unit before 1 July 2025. Island districts have no ward (empty code).
#[derive(Debug, Clone)]
pub struct LegacyWard {
    pub province_code: &'static str,
    pub province_name: &'static str,
    pub district_code: &'static str,
    pub district_name: &'static str,
    pub ward_code: &'static str,
    pub ward_name: &'static str,
}

impl LegacyWard {
    /// Its codes, as a registry would hold them.
    pub fn codes(&self) -> LegacyCodes<'static> {
        LegacyCodes { province_code: self.province_code, district_code: self.district_code, ward_code: self.ward_code }
    }
}

#[derive(Debug, Clone, Copy)]
struct Target {
    ward: usize,
    is_default: bool,
}

/// All units and the crosswalk, loaded once. Every name and code borrows
/// from the embedded data rather than copying it.
pub struct AdminUnits {
    pub wards: Vec<Ward>,
    pub legacy: Vec<LegacyWard>,
    ward_by_code: HashMap<&'static str, usize>,
    legacy_by_ward: HashMap<&'static str, usize>,
    legacy_by_district: HashMap<&'static str, usize>,
    /// Legacy ward code to its current ward(s).
    crosswalk: HashMap<&'static str, Vec<Target>>,
    /// Island district code (a district without wards) to its current ward(s).
    crosswalk_districts: HashMap<&'static str, Vec<Target>>,
    legacy_province_names: HashMap<&'static str, &'static str>,
    province_names: HashMap<&'static str, &'static str>,
}

/// A legacy address as a registry holds it.
#[derive(Debug, Clone, Default)]
pub struct LegacyCodes<'a> {
    pub province_code: &'a str,
    pub district_code: &'a str,
    /// Empty for island districts that had no wards.
    pub ward_code: &'a str,
}

/// The result of normalising an address to the current units.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Normalised {
    pub province_code: &'static str,
    pub province_name: &'static str,
    pub ward_code: &'static str,
    pub ward_name: &'static str,
    /// The legacy ward was split across several current wards and the default
    /// one was chosen: the citizen should confirm it.
    pub is_guess: bool,
    /// The other current wards the legacy ward was split into (when `is_guess`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("unknown legacy ward {0}")]
    UnknownLegacyWard(String),
    #[error("unknown legacy district {0}")]
    UnknownLegacyDistrict(String),
    #[error("unknown ward {0}")]
    UnknownWard(String),
    #[error("legacy ward {ward} is not in district {district}")]
    Inconsistent { ward: String, district: String },
}

fn rows(text: &'static str) -> impl Iterator<Item = Vec<&'static str>> {
    text.lines().skip(1).filter(|l| !l.trim().is_empty()).map(|l| l.trim_end_matches('\r').split(',').collect())
}

impl AdminUnits {
    /// The embedded data, parsed on first use.
    pub fn get() -> &'static AdminUnits {
        static UNITS: OnceLock<AdminUnits> = OnceLock::new();
        UNITS.get_or_init(AdminUnits::load)
    }

    fn load() -> AdminUnits {
        let mut wards = Vec::new();
        let mut ward_by_code = HashMap::new();
        let mut province_names = HashMap::new();
        for r in rows(UNITS_2025) {
            let w =
                Ward { province_code: r[0], province_name: r[1], ward_code: r[2], ward_name: r[3], ward_type: r[4] };
            province_names.insert(w.province_code, w.province_name);
            ward_by_code.insert(w.ward_code, wards.len());
            wards.push(w);
        }
        let mut legacy = Vec::new();
        let mut legacy_by_ward = HashMap::new();
        let mut legacy_by_district = HashMap::new();
        let mut legacy_province_names = HashMap::new();
        for r in rows(UNITS_LEGACY) {
            let l = LegacyWard {
                province_code: r[0],
                province_name: r[1],
                district_code: r[2],
                district_name: r[3],
                ward_code: r[5],
                ward_name: r[6],
            };
            legacy_province_names.insert(l.province_code, l.province_name);
            if l.ward_code.is_empty() {
                legacy_by_district.insert(l.district_code, legacy.len());
            } else {
                legacy_by_ward.insert(l.ward_code, legacy.len());
                legacy_by_district.entry(l.district_code).or_insert(legacy.len());
            }
            legacy.push(l);
        }
        let mut crosswalk: HashMap<&'static str, Vec<Target>> = HashMap::new();
        let mut crosswalk_districts: HashMap<&'static str, Vec<Target>> = HashMap::new();
        for r in rows(CROSSWALK) {
            let (map, key) = if r[2].is_empty() { (&mut crosswalk_districts, r[1]) } else { (&mut crosswalk, r[2]) };
            if let Some(&ward) = ward_by_code.get(r[4]) {
                map.entry(key).or_default().push(Target { ward, is_default: r[5] == "1" });
            }
        }
        AdminUnits {
            wards,
            legacy,
            ward_by_code,
            legacy_by_ward,
            legacy_by_district,
            crosswalk,
            crosswalk_districts,
            legacy_province_names,
            province_names,
        }
    }

    pub fn ward(&self, code: &str) -> Option<&Ward> {
        self.ward_by_code.get(code).map(|&i| &self.wards[i])
    }

    pub fn legacy_ward(&self, code: &str) -> Option<&LegacyWard> {
        self.legacy_by_ward.get(code).map(|&i| &self.legacy[i])
    }

    /// Any legacy unit of this district (the island unit for island districts).
    pub fn legacy_district(&self, code: &str) -> Option<&LegacyWard> {
        self.legacy_by_district.get(code).map(|&i| &self.legacy[i])
    }

    pub fn legacy_province_name(&self, code: &str) -> Option<&str> {
        self.legacy_province_names.get(code).copied()
    }

    pub fn province_name(&self, code: &str) -> Option<&str> {
        self.province_names.get(code).copied()
    }

    /// The current ward for a current code (nothing to translate).
    pub fn current(&self, ward_code: &str) -> Result<Normalised, UnitError> {
        let w = self.ward(ward_code).ok_or_else(|| UnitError::UnknownWard(ward_code.into()))?;
        Ok(Normalised {
            province_code: w.province_code,
            province_name: w.province_name,
            ward_code: w.ward_code,
            ward_name: w.ward_name,
            is_guess: false,
            alternatives: Vec::new(),
        })
    }

    /// Translates legacy codes through the crosswalk. A split ward yields the
    /// default new ward, flagged as a guess with the alternatives listed.
    pub fn from_legacy(&self, codes: &LegacyCodes<'_>) -> Result<Normalised, UnitError> {
        let targets = if codes.ward_code.is_empty() {
            if !self.legacy_by_district.contains_key(codes.district_code) {
                return Err(UnitError::UnknownLegacyDistrict(codes.district_code.into()));
            }
            self.crosswalk_districts.get(codes.district_code)
        } else {
            let l = self
                .legacy_ward(codes.ward_code)
                .ok_or_else(|| UnitError::UnknownLegacyWard(codes.ward_code.into()))?;
            if !codes.district_code.is_empty() && l.district_code != codes.district_code {
                return Err(UnitError::Inconsistent {
                    ward: codes.ward_code.into(),
                    district: codes.district_code.into(),
                });
            }
            self.crosswalk.get(codes.ward_code)
        };
        let targets = targets.filter(|t| !t.is_empty()).ok_or_else(|| {
            if codes.ward_code.is_empty() {
                UnitError::UnknownLegacyDistrict(codes.district_code.into())
            } else {
                UnitError::UnknownLegacyWard(codes.ward_code.into())
            }
        })?;
        let chosen = targets.iter().find(|t| t.is_default).unwrap_or(&targets[0]);
        let w = &self.wards[chosen.ward];
        let split = targets.len() > 1;
        Ok(Normalised {
            province_code: w.province_code,
            province_name: w.province_name,
            ward_code: w.ward_code,
            ward_name: w.ward_name,
            is_guess: split,
            alternatives: if split {
                targets.iter().filter(|t| t.ward != chosen.ward).map(|t| self.wards[t.ward].ward_code).collect()
            } else {
                Vec::new()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(ward: &str) -> Normalised {
        let u = AdminUnits::get();
        let l = u.legacy_ward(ward).unwrap();
        u.from_legacy(&LegacyCodes { ward_code: ward, ..l.codes() }).unwrap()
    }

    #[test]
    fn counts_match_the_reference_data() {
        let u = AdminUnits::get();
        assert_eq!(u.wards.len(), 3321);
        assert_eq!(u.legacy.len(), 10040);
        assert_eq!(u.province_names.len(), 34);
        assert_eq!(u.legacy_province_names.len(), 63);
    }

    #[test]
    fn merged_ward_maps_to_its_new_ward() {
        // Phường Phúc Xá (Ba Đình, Hà Nội) became part of Phường Hồng Hà.
        let n = legacy("00001");
        assert_eq!(n.ward_code, "00097");
        assert_eq!(n.province_code, "01");
        assert!(!n.is_guess);
    }

    #[test]
    fn unchanged_code_keeps_its_ward() {
        let n = legacy("00004");
        assert_eq!(n.ward_code, "00004");
        assert_eq!(n.ward_name, "Phường Ba Đình");
    }

    #[test]
    fn split_ward_takes_the_default_and_says_it_is_a_guess() {
        // Cống Vị was divided; the default is Phường Ngọc Hà (00008).
        let n = legacy("00007");
        assert_eq!(n.ward_code, "00008");
        assert!(n.is_guess);
        assert!(!n.alternatives.is_empty());
        assert!(!n.alternatives.contains(&"00008"));
    }

    #[test]
    fn island_district_without_wards_maps_by_district() {
        let u = AdminUnits::get();
        // Huyện Côn Đảo (Bà Rịa - Vũng Tàu) is now Đặc khu Côn Đảo in TP. Hồ Chí Minh.
        let n = u.from_legacy(&LegacyCodes { province_code: "77", district_code: "755", ward_code: "" }).unwrap();
        assert_eq!(n.ward_code, "26732");
        assert_eq!(n.province_code, "79");
    }

    #[test]
    fn merged_province_takes_its_new_name() {
        // A Nam Định ward is in Ninh Bình (37) since 2025.
        let u = AdminUnits::get();
        let l = u.legacy.iter().find(|l| l.province_code == "36" && !l.ward_code.is_empty()).unwrap();
        let n = legacy(l.ward_code);
        assert_eq!(n.province_code, "37");
        assert_eq!(u.legacy_province_name("36"), Some("Tỉnh Nam Định"));
    }

    #[test]
    fn unknown_and_inconsistent_codes_are_errors() {
        let u = AdminUnits::get();
        assert!(matches!(
            u.from_legacy(&LegacyCodes { province_code: "01", district_code: "001", ward_code: "99999" }),
            Err(UnitError::UnknownLegacyWard(_))
        ));
        assert!(matches!(
            u.from_legacy(&LegacyCodes { province_code: "01", district_code: "002", ward_code: "00001" }),
            Err(UnitError::Inconsistent { .. })
        ));
        assert!(u.current("99999").is_err());
    }
}
