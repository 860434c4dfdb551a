//! Dossier codes (mã hồ sơ) as Decree 61/2018/NĐ-CP has the one-stop systems
//! give them: the receiving agency's electronic identifier, the day of
//! receipt as yyMMdd, and the dossier's number among those it received that
//! day, as in `000.00.15.H29-261204-0001`.

use super::partner::check_agency_code;
use jiff::civil::Date;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DossierCode {
    pub agency: String,
    pub received: Date,
    /// 1 to 9999.
    pub sequence: u16,
}

impl DossierCode {
    pub fn new(agency: &str, received: Date, sequence: u16) -> Result<DossierCode, String> {
        check_agency_code(agency)?;
        if !(1..=9999).contains(&sequence) {
            return Err(format!("a day's dossiers are numbered 1 to 9999, not {sequence}"));
        }
        Ok(DossierCode { agency: agency.to_string(), received, sequence })
    }

    pub fn parse(code: &str) -> Result<DossierCode, String> {
        let bad =
            || format!("\"{code}\" is not a dossier code; expected AGENCY-yyMMdd-NNNN, as 000.00.15.H29-261204-0001");
        let mut parts = code.rsplitn(3, '-');
        let (Some(seq), Some(day), Some(agency)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(seq, 4) || !digits(day, 6) {
            return Err(bad());
        }
        let number = |s: &str| s.parse::<i16>().map_err(|_| bad());
        let received = Date::new(2000 + number(&day[0..2])?, number(&day[2..4])? as i8, number(&day[4..6])? as i8)
            .map_err(|_| bad())?;
        DossierCode::new(agency, received, seq.parse().map_err(|_| bad())?)
    }
}

impl fmt::Display for DossierCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{:02}{:02}{:02}-{:04}",
            self.agency,
            self.received.year() % 100,
            self.received.month(),
            self.received.day(),
            self.sequence
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_written_and_read_as_the_decree_has_them() {
        let c = DossierCode::new("000.00.15.H29", Date::new(2026, 12, 4).unwrap(), 7).unwrap();
        assert_eq!(c.to_string(), "000.00.15.H29-261204-0007");
        assert_eq!(DossierCode::parse("000.00.15.H29-261204-0007").unwrap(), c);
        for bad in
            ["000.00.15.H29-261304-0007", "000.00.15.H29-261204-7", "H29-261204-0007", "000.00.15.H29-261204-0000", ""]
        {
            assert!(DossierCode::parse(bad).is_err(), "{bad}");
        }
    }
}
