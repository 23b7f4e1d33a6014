//! Field values by type, refined by field name where the name says more (a `name` of a legal
//! person is a company name; `*_name` and personal strings are personal names).

use std::collections::BTreeMap;

use time::{Date, Duration};

use super::names::{
    FACTS, FORMS, GIVEN, INDUSTRIES, LICENCE_TYPES, PLACES, ROADS, SURNAMES, TRADE_NAMES,
};
use super::{Rng, SubjectIds};
use crate::catalog::{Field, FieldType, Item, Severity, SubjectType};
use crate::identifier::{ResidentId, Uscc};

pub(super) fn values(
    rng: &mut Rng,
    item: &Item,
    subject: &SubjectIds,
    severity: Option<Severity>,
    decision: Date,
) -> BTreeMap<String, String> {
    let division = subject.division(item.subject);
    let place = PLACES
        .iter()
        .find(|p| p.0 == division)
        .copied()
        .unwrap_or(PLACES[0]);
    let ctx = Ctx {
        item,
        subject,
        severity,
        decision,
        place,
    };
    item.fields
        .iter()
        .map(|f| (f.name.clone(), ctx.value(rng, f)))
        .collect()
}

struct Ctx<'a> {
    item: &'a Item,
    subject: &'a SubjectIds,
    severity: Option<Severity>,
    decision: Date,
    place: (&'static str, &'static str, &'static str, &'static str),
}

impl Ctx<'_> {
    fn value(&self, rng: &mut Rng, f: &Field) -> String {
        let name = f.name.as_str();
        match f.ty {
            FieldType::Uscc if self.item.subject == SubjectType::LegalPerson => {
                self.subject.uscc.to_string()
            }
            FieldType::Uscc => Uscc::generate(&mut || rng.next()).to_string(),
            FieldType::ResidentId if self.item.subject == SubjectType::NaturalPerson => {
                self.subject.person.to_string()
            }
            FieldType::ResidentId => ResidentId::generate(&mut || rng.next()).to_string(),
            FieldType::Date => self.date(rng, name).to_string(),
            FieldType::Amount => {
                let yuan = 1000 + rng.below(500_000);
                match rng.below(3) {
                    0 => yuan.to_string(),
                    1 => format!("{yuan}.{}", rng.below(10)),
                    _ => format!("{yuan}.{:02}", rng.below(100)),
                }
            }
            FieldType::Integer if name == "year" => (self.decision.year() - 1).to_string(),
            FieldType::Integer => (1 + rng.below(24)).to_string(),
            FieldType::Boolean => (rng.below(2) == 0).to_string(),
            FieldType::Enum if name == "severity" => self
                .severity
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|| f.values.first().cloned().unwrap_or_default()),
            FieldType::Enum => {
                let i = rng.below(f.values.len() as u64) as usize;
                f.values.get(i).cloned().unwrap_or_default()
            }
            FieldType::DivisionCode => self.place.0.to_owned(),
            FieldType::Mobile => format!("1{}{:09}", 3 + rng.below(7), rng.below(1_000_000_000)),
            FieldType::Address => self.address(rng),
            FieldType::Text => rng.pick(FACTS).to_owned(),
            FieldType::String => self.string(rng, f),
        }
    }

    fn date(&self, rng: &mut Rng, name: &str) -> Date {
        match name {
            "decision_date" | "listed_date" | "filed_date" => self.decision,
            "birth_date" => self.subject.person.birth_date(),
            "valid_to" => self.decision.saturating_add(Duration::days(365 * 5)),
            "established" => self
                .decision
                .saturating_sub(Duration::days(365 + rng.below(365 * 25) as i64)),
            _ => self
                .decision
                .saturating_sub(Duration::days(rng.below(60) as i64)),
        }
    }

    fn address(&self, rng: &mut Rng) -> String {
        let (_, province, city, district) = self.place;
        format!(
            "{province}{city}{district}{}{}号",
            rng.pick(ROADS),
            1 + rng.below(300)
        )
    }

    fn string(&self, rng: &mut Rng, f: &Field) -> String {
        let name = f.name.as_str();
        if name == "name" && !f.personal {
            return self.company(rng);
        }
        if f.personal || name.ends_with("_name") || name == "inspector" {
            return person(rng);
        }
        let (_, province, city, district) = self.place;
        let short = if city.is_empty() { province } else { city };
        let year = self.decision.year();
        match name {
            "court" => format!("{short}{district}人民法院"),
            "case_no" => format!("（{year}）执{}号", 100 + rng.below(9000)),
            "licence_type" => rng.pick(LICENCE_TYPES).to_owned(),
            n if n.ends_with("_no") => format!("{}〔{year}〕{}号", short, 1 + rng.below(9999)),
            n if n.ends_with("authority") => format!("{short}市场监督管理局"),
            _ => format!("{short}{district}"),
        }
    }

    /// e.g. 北京星河科技有限公司.
    fn company(&self, rng: &mut Rng) -> String {
        let (_, province, city, _) = self.place;
        let short = if city.is_empty() { province } else { city };
        let short = short.trim_end_matches(['市', '省']);
        format!(
            "{short}{}{}{}",
            rng.pick(TRADE_NAMES),
            rng.pick(INDUSTRIES),
            rng.pick(FORMS)
        )
    }
}

/// A surname and one or two given-name characters.
pub(super) fn person(rng: &mut Rng) -> String {
    let mut s = rng.pick(SURNAMES).to_owned();
    for _ in 0..1 + rng.below(2) {
        s.push_str(rng.pick(GIVEN));
    }
    s
}
