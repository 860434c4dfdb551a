//! One synthetic population behind the three mock registries, generated
//! deterministically from a seed: households with heads, spouses, children and
//! elderly parents, cross-linked by personal ID number.
//!
//! Records are compact (indices into name and unit tables); the registries
//! render them into each agency's own format on request.

use super::names::{self, weighted};
use crate::domain::{AdminUnits, CitizenId, Sex};
use jiff::civil::Date;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// The date the synthetic data describes ("today" for the registries), fixed
/// so that the same seed always yields the same data.
pub const REFERENCE_DATE: Date = jiff::civil::date(2026, 10, 1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Head,
    Spouse,
    Child,
    Parent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marital {
    Single,
    Married,
    Divorced,
    Widowed,
}

/// A data-quality defect deliberately present in a record, as real registries have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    None,
    /// An adult with no phone number on record.
    MissingPhone,
    /// The ID number's century/sex digit contradicts the recorded sex.
    IdContradictsSex,
    /// The current residence still points at an old address (not the household's).
    StaleAddress,
}

/// A parent known only by name (not in the registries' population).
#[derive(Debug, Clone, Copy)]
pub struct NameOnly {
    pub name: Name,
    pub birth_year: i16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name {
    pub surname: u8,
    pub middle: u8,
    pub given: u8,
    pub sex: Sex,
}

impl Name {
    pub fn surname(&self) -> &'static str {
        names::SURNAMES[self.surname as usize].0
    }
    pub fn middle(&self) -> &'static str {
        match self.sex {
            Sex::Male => names::MIDDLE_MALE[self.middle as usize].0,
            Sex::Female => names::MIDDLE_FEMALE[self.middle as usize].0,
        }
    }
    pub fn given(&self) -> &'static str {
        match self.sex {
            Sex::Male => names::GIVEN_MALE[self.given as usize].0,
            Sex::Female => names::GIVEN_FEMALE[self.given as usize].0,
        }
    }
    pub fn full(&self) -> String {
        format!("{} {} {}", self.surname(), self.middle(), self.given())
    }
}

#[derive(Debug, Clone)]
pub struct Person {
    pub id: CitizenId,
    pub name: Name,
    /// The sex on record (the ID's digit may contradict it: a defect).
    pub sex: Sex,
    pub dob: Date,
    pub ethnicity: u8,
    pub religion: u8,
    /// Legacy unit index where the birth was registered.
    pub birth_unit: u16,
    /// Legacy unit index of the home town (quê quán).
    pub hometown_unit: u16,
    pub household: u32,
    pub relation: Relation,
    pub father: Option<u32>,
    pub mother: Option<u32>,
    pub spouse: Option<u32>,
    pub father_ext: Option<NameOnly>,
    pub mother_ext: Option<NameOnly>,
    pub marital: Marital,
    pub death: Option<Date>,
    pub phone: Option<u64>,
    pub email: bool,
    pub blood: u8,
    pub old_id: Option<u32>,
    pub card_issued: Option<Date>,
    /// Temporary residence (legacy unit index), for people registered elsewhere.
    pub temp_unit: Option<u16>,
    pub defect: Defect,
    /// Stale current residence (legacy unit index), with `Defect::StaleAddress`.
    pub stale_unit: Option<u16>,
}

impl Person {
    pub fn age_on(&self, d: Date) -> i16 {
        let mut age = d.year() - self.dob.year();
        if (d.month(), d.day()) < (self.dob.month(), self.dob.day()) {
            age -= 1;
        }
        age
    }
    pub fn age(&self) -> i16 {
        self.age_on(REFERENCE_DATE)
    }
    pub fn is_alive(&self) -> bool {
        self.death.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct Household {
    /// Legacy unit index of the permanent residence.
    pub unit: u16,
    pub house_no: u16,
    pub street: u8,
    pub head: u32,
    pub members: Vec<u32>,
    /// The registry has moved this household's address to the 2025 units.
    pub updated_to_2025: bool,
}

impl Household {
    pub fn street_line(&self, units: &AdminUnits) -> String {
        let unit = &units.legacy[self.unit as usize];
        if unit.ward_name.starts_with("Xã") || unit.ward_code.is_empty() {
            format!("Thôn {}", 1 + self.house_no % 12)
        } else {
            format!("Số {} đường {}", self.house_no, names::STREETS[self.street as usize])
        }
    }
}

pub struct Population {
    pub seed: u64,
    pub people: Vec<Person>,
    pub households: Vec<Household>,
    by_id: HashMap<u64, u32>,
}

/// Sample citizens of each kind, for trying the registries.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Samples {
    pub adult_with_household: Vec<String>,
    pub child_under_6: Vec<String>,
    pub parent_of_newborn: Vec<String>,
    pub married: Vec<String>,
    pub deceased: Vec<String>,
    pub legacy_address: Vec<String>,
    pub split_ward_address: Vec<String>,
    pub missing_phone: Vec<String>,
    pub id_contradicts_sex: Vec<String>,
}

struct Gen<'a> {
    rng: ChaCha8Rng,
    units: &'a AdminUnits,
    people: Vec<Person>,
    households: Vec<Household>,
    by_id: HashMap<u64, u32>,
    province_of_unit: Vec<u16>,
}

impl Gen<'_> {
    fn pct(&mut self, p: u32) -> bool {
        self.rng.random_range(0..1000) < p
    }

    fn name(&mut self, sex: Sex, surname: Option<u8>) -> Name {
        let surname = surname.unwrap_or_else(|| weighted(names::SURNAMES, |x| x.1, self.rng.random()) as u8);
        let (middle, given) = match sex {
            Sex::Male => (
                weighted(names::MIDDLE_MALE, |x| x.1, self.rng.random()),
                weighted(names::GIVEN_MALE, |x| x.1, self.rng.random()),
            ),
            Sex::Female => (
                weighted(names::MIDDLE_FEMALE, |x| x.1, self.rng.random()),
                weighted(names::GIVEN_FEMALE, |x| x.1, self.rng.random()),
            ),
        };
        Name { surname, middle: middle as u8, given: given as u8, sex }
    }

    fn birth_date(&mut self, age: i16) -> Date {
        let year = REFERENCE_DATE.year() - age - 1;
        let day: i32 = self.rng.random_range(0..365);
        let d = jiff::civil::date(year, 10, 2).checked_add(jiff::Span::new().days(day)).unwrap_or(REFERENCE_DATE);
        if d > REFERENCE_DATE {
            REFERENCE_DATE
        } else {
            d
        }
    }

    fn random_unit(&mut self) -> u16 {
        self.rng.random_range(0..self.units.legacy.len()) as u16
    }

    fn new_id(&mut self, birth_unit: u16, sex: Sex, year: i16) -> CitizenId {
        let province = self.province_of_unit[birth_unit as usize];
        loop {
            let id = CitizenId::from_parts(province, sex, year, self.rng.random_range(0..1_000_000));
            if !self.by_id.contains_key(&id.as_u64()) {
                return id;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn person(
        &mut self,
        household: u32,
        relation: Relation,
        sex: Sex,
        age: i16,
        surname: Option<u8>,
        home: u16,
    ) -> u32 {
        let name = self.name(sex, surname);
        let dob = self.birth_date(age);
        let birth_unit = if self.pct(850) { home } else { self.random_unit() };
        let hometown_unit = if self.pct(700) { birth_unit } else { self.random_unit() };
        let defect = match self.rng.random_range(0..1000) {
            0..=2 => Defect::IdContradictsSex,
            3..=22 => Defect::StaleAddress,
            23..=52 if age >= 16 => Defect::MissingPhone,
            _ => Defect::None,
        };
        let id_sex = if defect == Defect::IdContradictsSex {
            match sex {
                Sex::Male => Sex::Female,
                Sex::Female => Sex::Male,
            }
        } else {
            sex
        };
        let id = self.new_id(birth_unit, id_sex, dob.year());
        let ethnicity = weighted(names::ETHNICITIES, |x| x.2, self.rng.random()) as u8;
        let religion = weighted(names::RELIGIONS, |x| x.2, self.rng.random()) as u8;
        let phone = (age >= 16 && defect != Defect::MissingPhone && self.pct(900)).then(|| {
            let prefix = [
                32u64, 33, 34, 35, 36, 37, 38, 39, 70, 76, 77, 78, 79, 81, 82, 83, 84, 85, 86, 88, 89, 90, 91, 94, 96,
                97, 98,
            ];
            let p = prefix[self.rng.random_range(0..prefix.len())];
            p * 10_000_000 + self.rng.random_range(0..10_000_000u64)
        });
        let email = age >= 18 && phone.is_some() && self.pct(300);
        let blood = if self.pct(400) { self.rng.random_range(1..names::BLOOD_TYPES.len()) as u8 } else { 0 };
        let old_id = (age >= 30 && self.pct(700)).then(|| self.rng.random_range(10_000_000..400_000_000u32));
        let card_issued = (age >= 14).then(|| {
            let days: i32 = self.rng.random_range(0..1400);
            jiff::civil::date(2021, 3, 1).checked_add(jiff::Span::new().days(days)).unwrap_or(REFERENCE_DATE)
        });
        let temp_unit = (age >= 18 && self.pct(60)).then(|| self.random_unit());
        let stale_unit = (defect == Defect::StaleAddress).then(|| self.random_unit());
        let idx = self.people.len() as u32;
        self.by_id.insert(id.as_u64(), idx);
        self.people.push(Person {
            id,
            name,
            sex,
            dob,
            ethnicity,
            religion,
            birth_unit,
            hometown_unit,
            household,
            relation,
            father: None,
            mother: None,
            spouse: None,
            father_ext: None,
            mother_ext: None,
            marital: Marital::Single,
            death: None,
            phone,
            email,
            blood,
            old_id,
            card_issued,
            temp_unit,
            defect,
            stale_unit,
        });
        idx
    }

    fn name_only(&mut self, sex: Sex, surname: Option<u8>, birth_year: i16) -> NameOnly {
        NameOnly { name: self.name(sex, surname), birth_year }
    }

    fn death_after(&mut self, p: u32, min_age: i16) -> Date {
        let person = &self.people[p as usize];
        let dob = person.dob;
        let earliest = (dob.year() + min_age).clamp(2000, 2026);
        let year = self.rng.random_range(earliest..=2026);
        let day: i32 = self.rng.random_range(0..270);
        let d = jiff::civil::date(year, 1, 1).checked_add(jiff::Span::new().days(day)).unwrap_or(REFERENCE_DATE);
        d.max(dob)
    }

    fn household(&mut self) {
        let h = self.households.len() as u32;
        let unit = self.random_unit();
        let head_age: i16 = match self.rng.random_range(0..100) {
            0..=24 => self.rng.random_range(22..35),
            25..=64 => self.rng.random_range(35..55),
            65..=89 => self.rng.random_range(55..70),
            _ => self.rng.random_range(70..90),
        };
        let head_sex = if self.pct(750) { Sex::Male } else { Sex::Female };
        let head = self.person(h, Relation::Head, head_sex, head_age, None, unit);
        let mut members = vec![head];
        let head_surname = self.people[head as usize].name.surname;
        let fy = self.people[head as usize].dob.year() - self.rng.random_range(22..36);
        let my = self.people[head as usize].dob.year() - self.rng.random_range(19..33);
        let father_ext = self.name_only(Sex::Male, Some(head_surname), fy);
        let mother_ext = self.name_only(Sex::Female, None, my);
        self.people[head as usize].father_ext = Some(father_ext);
        self.people[head as usize].mother_ext = Some(mother_ext);

        let married = head_age >= 22 && self.pct(if head_age < 28 { 550 } else { 820 });
        let mut spouse = None;
        if married {
            let sp_sex = match head_sex {
                Sex::Male => Sex::Female,
                Sex::Female => Sex::Male,
            };
            let sp_age = (head_age + self.rng.random_range(-6..=4)).max(19);
            let s = self.person(h, Relation::Spouse, sp_sex, sp_age, None, unit);
            let sy = self.people[s as usize].dob.year();
            let s_surname = self.people[s as usize].name.surname;
            let (fa, ma) = (self.rng.random_range(22..36), self.rng.random_range(19..33));
            let sf = self.name_only(Sex::Male, Some(s_surname), sy - fa);
            let sm = self.name_only(Sex::Female, None, sy - ma);
            self.people[s as usize].father_ext = Some(sf);
            self.people[s as usize].mother_ext = Some(sm);
            self.people[head as usize].spouse = Some(s);
            self.people[s as usize].spouse = Some(head);
            self.people[head as usize].marital = Marital::Married;
            self.people[s as usize].marital = Marital::Married;
            members.push(s);
            spouse = Some(s);
        } else if head_age >= 30 && self.pct(150) {
            self.people[head as usize].marital = if head_age > 60 { Marital::Widowed } else { Marital::Divorced };
        }

        // Children: of the couple, or of a single parent.
        let (father, mother) = match (head_sex, spouse) {
            (Sex::Male, s) => (Some(head), s),
            (Sex::Female, s) => (s, Some(head)),
        };
        let mother_age = mother.map(|m| self.people[m as usize].age()).unwrap_or(head_age);
        if mother_age >= 20 && (married || self.pct(250)) {
            let max_child_age = (mother_age - 19).min(30);
            let n = if mother_age <= 45 { self.rng.random_range(0..=3) } else { self.rng.random_range(0..=2) };
            let young_family = mother_age <= 38 && self.pct(450);
            for k in 0..n {
                let age = if k == 0 && young_family {
                    self.rng.random_range(0..=max_child_age.clamp(0, 5))
                } else {
                    self.rng.random_range(0..=max_child_age.max(0))
                };
                let sex = if self.pct(512) { Sex::Male } else { Sex::Female };
                let surname = father.map(|f| self.people[f as usize].name.surname).unwrap_or(head_surname);
                let c = self.person(h, Relation::Child, sex, age, Some(surname), unit);
                self.people[c as usize].father = father;
                self.people[c as usize].mother = mother;
                if father.is_none() {
                    let y = self.people[c as usize].dob.year() - self.rng.random_range(22..40);
                    self.people[c as usize].father_ext = Some(self.name_only(Sex::Male, Some(surname), y));
                }
                if mother.is_none() {
                    let y = self.people[c as usize].dob.year() - self.rng.random_range(20..38);
                    self.people[c as usize].mother_ext = Some(self.name_only(Sex::Female, None, y));
                }
                members.push(c);
            }
        }

        // An elderly parent of the head living in the household.
        if head_age < 58 && self.pct(90) {
            let p_sex = if self.pct(600) { Sex::Female } else { Sex::Male };
            let p_age = head_age + self.rng.random_range(22..34);
            let surname = (p_sex == Sex::Male).then_some(head_surname);
            let p = self.person(h, Relation::Parent, p_sex, p_age, surname, unit);
            self.people[p as usize].marital = Marital::Widowed;
            // The head's parent is now a linked citizen, replacing the name-only one.
            match p_sex {
                Sex::Male => {
                    self.people[head as usize].father = Some(p);
                    self.people[head as usize].father_ext = None;
                    self.people[p as usize].name.surname = head_surname;
                }
                Sex::Female => {
                    self.people[head as usize].mother = Some(p);
                    self.people[head as usize].mother_ext = None;
                }
            }
            if self.pct(250) {
                let d = self.death_after(p, 60);
                self.people[p as usize].death = Some(d);
            }
            members.push(p);
        }

        // A few heads have died; their spouse is widowed.
        if head_age >= 50 && self.pct(40) {
            let d = self.death_after(head, 50);
            self.people[head as usize].death = Some(d);
            if let Some(s) = spouse {
                self.people[s as usize].marital = Marital::Widowed;
            }
        }

        let updated_to_2025 = self.pct(450);
        let house_no = self.rng.random_range(1..400);
        let street = self.rng.random_range(0..names::STREETS.len()) as u8;
        self.households.push(Household { unit, house_no, street, head, members, updated_to_2025 });
    }
}

impl Population {
    /// Generates about `n` citizens (whole households; at least `n`).
    pub fn generate(seed: u64, n: usize) -> Population {
        let units = AdminUnits::get();
        let province_of_unit =
            units.legacy.iter().map(|l| l.province_code.parse::<u16>().unwrap_or(1)).collect::<Vec<_>>();
        let mut g = Gen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            units,
            people: Vec::with_capacity(n + 8),
            households: Vec::with_capacity(n / 3 + 1),
            by_id: HashMap::with_capacity(n + 8),
            province_of_unit,
        };
        while g.people.len() < n {
            g.household();
        }
        Population { seed, people: g.people, households: g.households, by_id: g.by_id }
    }

    pub fn find(&self, id: &str) -> Option<&Person> {
        let id = CitizenId::parse(id).ok()?;
        self.by_id.get(&id.as_u64()).map(|&i| &self.people[i as usize])
    }

    pub fn index_of(&self, id: CitizenId) -> Option<u32> {
        self.by_id.get(&id.as_u64()).copied()
    }

    pub fn get(&self, idx: u32) -> &Person {
        &self.people[idx as usize]
    }

    pub fn household_of(&self, p: &Person) -> &Household {
        &self.households[p.household as usize]
    }

    /// Whether this person's records carry legacy (pre-2025) unit codes.
    pub fn has_legacy_address(&self, p: &Person) -> bool {
        !self.household_of(p).updated_to_2025
    }

    /// Up to `per_kind` citizen IDs of each kind.
    pub fn samples(&self, per_kind: usize) -> Samples {
        let units = AdminUnits::get();
        let mut s = Samples::default();
        let push = |v: &mut Vec<String>, p: &Person| {
            if v.len() < per_kind {
                v.push(p.id.to_string())
            }
        };
        for p in &self.people {
            let h = self.household_of(p);
            let alive = p.is_alive();
            if alive
                && p.relation == Relation::Head
                && p.age() >= 18
                && h.members.len() >= 3
                && p.defect == Defect::None
            {
                push(&mut s.adult_with_household, p);
            }
            if alive && p.age() < 6 {
                push(&mut s.child_under_6, p);
            }
            if alive && p.age() < 1 {
                if let Some(m) = p.mother {
                    push(&mut s.parent_of_newborn, self.get(m));
                }
            }
            if alive && p.marital == Marital::Married && p.defect == Defect::None {
                push(&mut s.married, p);
            }
            if !alive {
                push(&mut s.deceased, p);
            }
            if alive && self.has_legacy_address(p) && p.defect == Defect::None {
                push(&mut s.legacy_address, p);
                let unit = &units.legacy[h.unit as usize];
                if units.from_legacy(&unit.codes()).is_ok_and(|n| n.is_guess) {
                    push(&mut s.split_ward_address, p);
                }
            }
            match p.defect {
                Defect::MissingPhone => push(&mut s.missing_phone, p),
                Defect::IdContradictsSex => push(&mut s.id_contradicts_sex, p),
                _ => {}
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_people() {
        let a = Population::generate(7, 2_000);
        let b = Population::generate(7, 2_000);
        assert_eq!(a.people.len(), b.people.len());
        for (x, y) in a.people.iter().zip(&b.people) {
            assert_eq!((x.id, x.name, x.dob, x.phone), (y.id, y.name, y.dob, y.phone));
        }
        let c = Population::generate(8, 2_000);
        assert_ne!(a.people[0].id, c.people[0].id);
    }

    #[test]
    fn ids_follow_the_national_structure() {
        let pop = Population::generate(1, 5_000);
        let units = AdminUnits::get();
        let mut contradictions = 0;
        for p in &pop.people {
            let parsed = CitizenId::parse(&p.id.to_string()).expect("valid ID");
            assert_eq!(parsed.birth_year(), p.dob.year());
            assert_eq!(parsed.birth_province(), units.legacy[p.birth_unit as usize].province_code);
            if parsed.sex() != p.sex {
                contradictions += 1;
                assert_eq!(p.defect, Defect::IdContradictsSex);
            }
        }
        assert!(contradictions > 0 && contradictions < pop.people.len() / 100, "{contradictions}");
    }

    #[test]
    fn families_are_cross_linked() {
        let pop = Population::generate(3, 5_000);
        for (i, p) in pop.people.iter().enumerate() {
            if let Some(s) = p.spouse {
                assert_eq!(pop.get(s).spouse, Some(i as u32));
                assert_ne!(pop.get(s).sex, p.sex);
            }
            if let Some(f) = p.father {
                assert_eq!(pop.get(f).sex, Sex::Male);
                assert!(pop.get(f).dob < p.dob);
            }
            if let Some(m) = p.mother {
                assert_eq!(pop.get(m).sex, Sex::Female);
                assert!(pop.get(m).age() - p.age() >= 18, "mother at least 18 at the birth");
            }
            assert!(pop.households[p.household as usize].members.contains(&(i as u32)));
        }
        let s = pop.samples(3);
        for kind in [&s.adult_with_household, &s.child_under_6, &s.married, &s.deceased, &s.legacy_address] {
            assert_eq!(kind.len(), 3, "{s:?}");
        }
    }
}
