//! Synthetic, realistic credit records for demos, load tests and round-trip tests.
//!
//! Deterministic: the same catalog, department, count, seed and `today` always give the same
//! records (no rand crate; [`splitmix64`] from the identifier module). Identifiers carry correct
//! check characters, names use common and compound surnames and some characters outside the
//! Basic Multilingual Plane, addresses and division codes agree, and some records are expired,
//! restored or removed from their list, so promise 8 has something to bite on.
//!
//! Every generated record passes [`crate::ingest::validate`] for its department on `today`, and
//! [`to_json_line`] writes it in the ingest format, so `gen-data` output re-ingests cleanly.
//!
//! Architecture invariant: pure (no I/O, no clock).

mod fields;
mod names;

use std::collections::HashSet;

use time::{Date, Duration};

use crate::catalog::{Catalog, Item, Severity, SubjectType};
use crate::identifier::{ResidentId, Uscc, splitmix64};
use crate::ingest::is_list_item;
use crate::records::{Basis, Designation, Record, Restoration};

pub use crate::ingest::to_json_line;

/// How far back decision dates reach: far enough that most ordinary records and some serious
/// ones have expired.
const HISTORY_DAYS: u64 = 6 * 365;

/// Records for `subjects` synthetic subjects of the items `department` records, one to three
/// records per subject. Empty when the department records no item.
pub fn generate<'a>(
    catalog: &'a Catalog,
    department: &'a str,
    subjects: u64,
    seed: u64,
    today: Date,
) -> impl Iterator<Item = Record> + 'a {
    generate_numbered(catalog, department, subjects, seed, today).map(|(_, record)| record)
}

/// [`generate`], each record with the number of its synthetic subject (0 to `subjects - 1`,
/// in order): how far the generation has come.
pub fn generate_numbered<'a>(
    catalog: &'a Catalog,
    department: &'a str,
    subjects: u64,
    seed: u64,
    today: Date,
) -> impl Iterator<Item = (u64, Record)> + 'a {
    let items: Vec<&'a Item> = catalog
        .items
        .iter()
        .filter(|i| i.source_department == department)
        .collect();
    let subjects = if items.is_empty() { 0 } else { subjects };
    // Identifiers drawn at random collide now and then (a resident ID has far fewer values
    // than its 18 characters suggest); a subject drawn twice would merge two subjects'
    // records, and `--subjects N` promises N. A collision draws again, from the same stream,
    // so the output stays a function of the seed.
    let mut taken = (HashSet::new(), HashSet::new());
    (0..subjects).flat_map(move |n| {
        let mut rng = Rng::new(seed ^ n.wrapping_mul(0xA24B_AED4_963E_E407));
        let subject = loop {
            let ids = SubjectIds::new(&mut rng);
            if !taken.0.contains(&ids.uscc) && !taken.1.contains(&ids.person) {
                taken.0.insert(ids.uscc);
                taken.1.insert(ids.person);
                break ids;
            }
        };
        let count = 1 + rng.below(3);
        let first = rng.below(items.len() as u64);
        (0..count)
            .map(|k| {
                let item = items[((first + k) % items.len() as u64) as usize];
                (n, record(&mut rng, item, &subject, n, k, department, today))
            })
            .collect::<Vec<_>>()
    })
}

/// The identifiers of one synthetic subject, by subject type.
pub(super) struct SubjectIds {
    pub(super) uscc: Uscc,
    pub(super) person: ResidentId,
}

impl SubjectIds {
    fn new(rng: &mut Rng) -> Self {
        Self {
            uscc: Uscc::generate(&mut || rng.next()),
            person: ResidentId::generate(&mut || rng.next()),
        }
    }

    pub(super) fn id(&self, ty: SubjectType) -> String {
        match ty {
            SubjectType::LegalPerson => self.uscc.to_string(),
            SubjectType::NaturalPerson => self.person.to_string(),
        }
    }

    /// The subject's division code: where it is registered or where the person was born.
    pub(super) fn division(&self, ty: SubjectType) -> String {
        match ty {
            SubjectType::LegalPerson => self.uscc.division_code().to_owned(),
            SubjectType::NaturalPerson => self.person.as_str()[..6].to_owned(),
        }
    }
}

fn record(
    rng: &mut Rng,
    item: &Item,
    subject: &SubjectIds,
    n: u64,
    k: u64,
    department: &str,
    today: Date,
) -> Record {
    let decision_date = today.saturating_sub(Duration::days(rng.below(HISTORY_DAYS) as i64));
    let severity = severity(rng, item);
    let fields = fields::values(rng, item, subject, severity, decision_date);
    let (kind, abbr) = document(item);
    let place = names::PLACES
        .iter()
        .find(|p| p.0 == subject.division(item.subject))
        .map_or("京", |p| short_province(p.1));
    let basis = Basis {
        kind: kind.to_owned(),
        number: format!(
            "{place}{abbr}〔{}〕{}号",
            decision_date.year(),
            n * 4 + k + 1
        ),
        date: decision_date,
        issuer: department.to_owned(),
    };
    let days_since = (today - decision_date).whole_days().max(0) as u64;
    let restoration = (item.restorable && days_since > 90 && rng.below(100) < 15).then(|| {
        let on =
            decision_date.saturating_add(Duration::days((90 + rng.below(days_since - 89)) as i64));
        // The decision's number carries the year it was made, as the restoration's date does.
        Restoration {
            on,
            basis: format!("{place}信用修复决定〔{}〕{}号", on.year(), n + 1),
        }
    });
    let designation = is_list_item(item).then(|| {
        let removed = days_since > 0 && rng.below(100) < 20;
        let removed_on = removed.then(|| {
            decision_date
                .saturating_add(Duration::days(1 + rng.below(days_since) as i64))
                .min(today)
        });
        Designation {
            designated_on: decision_date,
            removal_conditions: "履行相关义务、纠正失信行为并作出信用承诺满一年".to_owned(),
            removed_on,
            removal_basis: removed_on.map(|on| {
                format!(
                    "{place}移出严重失信主体名单决定书〔{}〕{}号",
                    on.year(),
                    n + 1
                )
            }),
        }
    });
    let disclosure_end = severity.map(|s| {
        item.disclosure_end(decision_date, s)
            .unwrap_or(decision_date)
    });
    Record {
        subject: subject.id(item.subject),
        item: item.id.clone(),
        fields,
        basis,
        severity,
        decision_date,
        disclosure_end,
        restoration,
        designation,
    }
}

/// A class the item has, mostly ordinary ones, as in real data.
fn severity(rng: &mut Rng, item: &Item) -> Option<Severity> {
    let classes: Vec<Severity> = [Severity::Minor, Severity::Ordinary, Severity::Serious]
        .into_iter()
        .filter(|c| item.disclosure.months(*c).is_some())
        .collect();
    if classes.is_empty() {
        return None;
    }
    let weights: Vec<u64> = classes
        .iter()
        .map(|c| match c {
            Severity::Minor => 2,
            Severity::Ordinary => 6,
            Severity::Serious => 2,
        })
        .collect();
    let mut roll = rng.below(weights.iter().sum());
    for (c, w) in classes.iter().zip(&weights) {
        if roll < *w {
            return Some(*c);
        }
        roll -= w;
    }
    classes.last().copied()
}

/// The basis document's kind and the abbreviation used in its number, by item category.
fn document(item: &Item) -> (&'static str, &'static str) {
    match item.category.as_str() {
        "行政处罚" => ("行政处罚决定书", "市监罚"),
        "行政许可" => ("行政许可决定书", "市监许"),
        "登记注册" => ("登记通知书", "市监登"),
        "司法判决" => ("失信决定书", "执"),
        "信用评价" => ("纳税信用评价结果通知书", "税信"),
        "欠缴信息" => ("社会保险费限期缴纳通知书", "社保催"),
        c if c.ends_with("名单") => ("列入严重失信主体名单决定书", "失信列"),
        _ => ("工作记录", "记"),
    }
}

/// `北京市` → `京` style abbreviations used in document numbers.
fn short_province(p: &str) -> &'static str {
    match p {
        "北京市" => "京",
        "天津市" => "津",
        "上海市" => "沪",
        "江苏省" => "苏",
        "浙江省" => "浙",
        "安徽省" => "皖",
        "山东省" => "鲁",
        "湖北省" => "鄂",
        "广东省" => "粤",
        "重庆市" => "渝",
        "四川省" => "川",
        "陕西省" => "陕",
        _ => "新",
    }
}

/// A thin wrapper over [`splitmix64`] with the helpers generation needs.
pub(super) struct Rng(Box<dyn FnMut() -> u64>);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(Box::new(splitmix64(seed)))
    }

    pub(super) fn next(&mut self) -> u64 {
        (self.0)()
    }

    /// Uniform enough in `0..n` for synthetic data; 0 when `n` is 0.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    pub(super) fn pick<'s>(&mut self, list: &[&'s str]) -> &'s str {
        list.get(self.below(list.len() as u64) as usize)
            .copied()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
