//! The 12-digit personal identification number (số định danh cá nhân):
//! 3 digits for the province where the birth was registered (the legacy
//! province code, zero-padded), 1 digit for century and sex, 2 digits for the
//! year of birth, 6 random digits. There is no checksum.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Male,
    Female,
}

impl Sex {
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
        }
    }
}

/// A syntactically valid personal identification number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CitizenId(u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CitizenIdError {
    #[error("a personal identification number has exactly 12 digits (0-9)")]
    Format,
    #[error("the first three digits ({0}) are not the code of a province")]
    Province(String),
    #[error("the fourth digit ({0}) must be 0-5 (century and sex)")]
    Century(u8),
}

/// The legacy province codes (the 63 provinces before 2025), as used in the
/// first three digits.
pub const LEGACY_PROVINCES: [u16; 63] = [
    1, 2, 4, 6, 8, 10, 11, 12, 14, 15, 17, 19, 20, 22, 24, 25, 26, 27, 30, 31, 33, 34, 35, 36, 37, 38, 40, 42, 44, 45,
    46, 48, 49, 51, 52, 54, 56, 58, 60, 62, 64, 66, 67, 68, 70, 72, 74, 75, 77, 79, 80, 82, 83, 84, 86, 87, 89, 91, 92,
    93, 94, 95, 96,
];

/// The regular expression (JSON Schema's `pattern`) that exactly the numbers
/// [`CitizenId::parse`] accepts match, made from the same rules: a legacy
/// province's code, a century-and-sex digit of 0 to 5, then 8 digits.
pub fn pattern() -> &'static str {
    static PATTERN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| {
        let provinces: Vec<String> = LEGACY_PROVINCES.iter().map(|p| format!("{p:03}")).collect();
        format!("^(?:{})[0-5][0-9]{{8}}$", provinces.join("|"))
    })
}

impl CitizenId {
    pub fn parse(s: &str) -> Result<CitizenId, CitizenIdError> {
        let b = s.as_bytes();
        if b.len() != 12 || !b.iter().all(u8::is_ascii_digit) {
            return Err(CitizenIdError::Format);
        }
        let province = (b[0] - b'0') as u16 * 100 + (b[1] - b'0') as u16 * 10 + (b[2] - b'0') as u16;
        if !LEGACY_PROVINCES.contains(&province) {
            return Err(CitizenIdError::Province(s[..3].to_string()));
        }
        let century = b[3] - b'0';
        if century > 5 {
            return Err(CitizenIdError::Century(century));
        }
        Ok(CitizenId(s.parse().map_err(|_| CitizenIdError::Format)?))
    }

    /// Builds a number from its parts (used by the synthetic registries).
    pub fn from_parts(province: u16, sex: Sex, birth_year: i16, random: u32) -> CitizenId {
        let century = ((birth_year / 100) - 19).clamp(0, 2) as u64;
        let digit = century * 2 + u64::from(sex == Sex::Female);
        let yy = (birth_year.rem_euclid(100)) as u64;
        CitizenId(province as u64 * 1_000_000_000 + digit * 100_000_000 + yy * 1_000_000 + (random % 1_000_000) as u64)
    }

    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Two-digit legacy province code of the birth registration ("01", "79").
    pub fn birth_province(self) -> String {
        format!("{:02}", self.0 / 1_000_000_000)
    }

    fn century_digit(self) -> u8 {
        ((self.0 / 100_000_000) % 10) as u8
    }

    pub fn sex(self) -> Sex {
        if self.century_digit() % 2 == 0 {
            Sex::Male
        } else {
            Sex::Female
        }
    }

    pub fn birth_year(self) -> i16 {
        let century = 1900 + 100 * (self.century_digit() / 2) as i16;
        century + ((self.0 / 1_000_000) % 100) as i16
    }

    /// What in this number contradicts a record's date of birth or sex.
    pub fn contradictions(self, birth_year: i16, sex: Sex) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.birth_year() != birth_year {
            out.push("birth_year");
        }
        if self.sex() != sex {
            out.push("sex");
        }
        out
    }
}

impl fmt::Display for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:012}", self.0)
    }
}

/// Debug never shows the number: it is personal data and must stay out of logs.
impl fmt::Debug for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CitizenId({}*********)", &self.to_string()[..3])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_province_century_sex_and_year() {
        let id = CitizenId::parse("001090012345").unwrap();
        assert_eq!(id.birth_province(), "01");
        assert_eq!(id.sex(), Sex::Male);
        assert_eq!(id.birth_year(), 1990);
        let id = CitizenId::parse("079305123456").unwrap();
        assert_eq!(id.birth_province(), "79");
        assert_eq!(id.sex(), Sex::Female);
        assert_eq!(id.birth_year(), 2005);
        assert_eq!(id.to_string(), "079305123456");
    }

    #[test]
    fn rejects_malformed_numbers() {
        for bad in ["", "00109001234", "0010900123456", "00109001234a", "００１０９００１２３４５", " 001090012345"]
        {
            assert_eq!(CitizenId::parse(bad), Err(CitizenIdError::Format), "{bad:?}");
        }
        assert_eq!(CitizenId::parse("003090012345"), Err(CitizenIdError::Province("003".into())));
        assert_eq!(CitizenId::parse("001690012345"), Err(CitizenIdError::Century(6)));
    }

    #[test]
    fn the_pattern_accepts_exactly_what_parse_accepts() {
        let re = regex_bites::Regex::new(pattern()).unwrap();
        for province in 0..1000u16 {
            for digit in 0..10u8 {
                let id = format!("{province:03}{digit}90012345");
                assert_eq!(re.is_match(&id), CitizenId::parse(&id).is_ok(), "{id}");
            }
        }
        for bad in ["", "00109001234", "0010900123456", "00109001234a", " 001090012345", "001090012345\n"] {
            assert!(!re.is_match(bad), "{bad:?}");
        }
    }

    #[test]
    fn from_parts_round_trips() {
        let id = CitizenId::from_parts(36, Sex::Female, 2019, 42);
        assert_eq!(id.to_string(), "036319000042");
        assert_eq!(id.birth_year(), 2019);
        assert_eq!(id.sex(), Sex::Female);
        assert!(id.contradictions(2019, Sex::Female).is_empty());
        assert_eq!(id.contradictions(2018, Sex::Male), vec!["birth_year", "sex"]);
    }

    #[test]
    fn debug_hides_the_number() {
        let id = CitizenId::parse("001090012345").unwrap();
        assert!(!format!("{id:?}").contains("090012345"));
    }
}
