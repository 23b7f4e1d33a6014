//! One query's answer, from a policy decision and the subject's stored records: the join of
//! promise 2 (default deny, field by field), 4 (de-sensitized forms) and 8 (expired and
//! restored records are not shared).
//!
//! Architecture invariant: pure: no I/O, no clock (today's date is an argument). The handler
//! reads the records, calls [`answer`], logs the outcome in the ledger and only then responds.

use time::Date;

use crate::{
    desensitize::{Form, RecipientKey},
    policy::{Decision, Outcome, Withheld},
    records::{Record, RecordId, RecordIds},
};

/// A record as it leaves the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordView {
    pub item: String,
    /// Hex of [`Record::key`]: stable, and lets an operator restore exactly this record.
    pub record_id: RecordId,
    /// `None` where the item's grants withhold what the date would tell
    /// ([`crate::policy::ItemDecision::dates`]).
    pub decision_date: Option<Date>,
    /// `None` as above, and for records without a period.
    pub disclosure_end: Option<Date>,
    /// (field, value, form) in decision order.
    pub fields: Vec<(String, String, Form)>,
    /// Fields withheld for this record only (a value that does not fit its rule, suppressed).
    pub withheld: Vec<(String, Withheld)>,
}

/// The whole answer for one subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub records: Vec<RecordView>,
    /// (item, field, reason): what the decision withheld for every record of the item, and
    /// items refused as a whole (field empty).
    pub withheld: Vec<(String, String, Withheld)>,
    /// Per field decided: "item.field" and its outcome, for the ledger.
    pub decisions: Vec<(String, Outcome)>,
}

/// How a query ended, for the ledger and for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerKind {
    /// Everything requested was granted.
    Granted,
    /// Some fields were withheld.
    PartlyWithheld,
    /// Nothing was granted.
    Denied,
}

impl Answer {
    pub fn kind(&self) -> AnswerKind {
        let granted = self
            .decisions
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Granted(_)));
        let withheld =
            !self.withheld.is_empty() || self.records.iter().any(|r| !r.withheld.is_empty());
        match (granted, withheld) {
            (false, _) => AnswerKind::Denied,
            (true, true) => AnswerKind::PartlyWithheld,
            (true, false) => AnswerKind::Granted,
        }
    }
}

/// An answer without records: the decision per field, and what it withholds for every record
/// (items refused as a whole with an empty field).
fn decided(decision: &Decision<'_>) -> Answer {
    let mut out = Answer {
        records: Vec::new(),
        withheld: Vec::new(),
        decisions: Vec::new(),
    };
    for item in decision.items() {
        if let Some(reason) = item.refused() {
            out.withheld
                .push((item.item().to_owned(), String::new(), reason));
        }
        for f in item.fields() {
            out.decisions
                .push((format!("{}.{}", item.item(), f.field()), f.outcome()));
            if let Outcome::Withheld(reason) = f.outcome()
                && item.refused().is_none()
            {
                out.withheld
                    .push((item.item().to_owned(), f.field().to_owned(), reason));
            }
        }
    }
    out
}

/// Applies `decision` to the subject's `records` on `today`. Records of items not requested,
/// not disclosable today (expired, restored, removed from the list) or refused as a whole leave
/// no trace; each remaining record carries exactly its granted fields, in their forms, and its
/// id by `ids`.
pub fn answer(
    decision: &Decision<'_>,
    records: &[Record],
    today: Date,
    key: &RecipientKey,
    ids: &RecordIds,
) -> Answer {
    let mut out = decided(decision);
    for item in decision.items() {
        if item.refused().is_some()
            || !item
                .fields()
                .iter()
                .any(|f| matches!(f.outcome(), Outcome::Granted(_)))
        {
            continue;
        }
        for record in records.iter().filter(|r| r.item == item.item()) {
            if record.disclosable(today).is_err() {
                continue;
            }
            // The decision was made for this caller; a key for anyone else is a programming
            // error, and the record is then withheld rather than disclosed.
            let Ok(disclosed) = decision.disclose(item.item(), &record.fields, key) else {
                continue;
            };
            let forms = item.fields();
            let dated = item
                .dates()
                .decision_date(&disclosed.fields, record.decision_date);
            out.records.push(RecordView {
                item: record.item.clone(),
                record_id: ids.id_of(&record.key()),
                decision_date: dated.then_some(record.decision_date),
                disclosure_end: record
                    .disclosure_end
                    .filter(|_| dated && item.dates().disclosure_end()),
                fields: disclosed
                    .fields
                    .into_iter()
                    .filter_map(|(name, value)| {
                        let form =
                            forms.iter().find(|f| f.field() == name).and_then(|f| {
                                match f.outcome() {
                                    Outcome::Granted(form) => Some(form),
                                    Outcome::Withheld(_) => None,
                                }
                            })?;
                        Some((name.to_owned(), value, form))
                    })
                    .collect(),
                withheld: disclosed
                    .withheld
                    .into_iter()
                    .filter(|(name, _)| {
                        // Decision-level withholdings are reported once, not per record.
                        forms.iter().any(|f| {
                            f.field() == *name && matches!(f.outcome(), Outcome::Granted(_))
                        })
                    })
                    .map(|(name, why)| (name.to_owned(), why))
                    .collect(),
            });
        }
    }
    out
}

/// A record as the node that holds it sent it, in answer to a forwarded query: the fields it
/// granted, each with the form it gave them in (its spelling), and those it withheld.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relayed {
    pub item: String,
    pub record_id: RecordId,
    pub decision_date: Option<Date>,
    pub disclosure_end: Option<Date>,
    /// (field, value, form).
    pub fields: Vec<(String, String, String)>,
    pub withheld: Vec<(String, Withheld)>,
}

/// The answer of a forwarded query: what the holding node sent (`relayed`, and `withheld`, what
/// it withheld for every record), narrowed to this node's `decision` for the same caller. A
/// hop never grants more than the caller has here:
///
/// - a field this node withholds is withheld, whatever was sent (and was not asked for);
/// - a field sent raw leaves in this node's form for it, applied here;
/// - a field sent in a form leaves as sent when this node grants it raw, or in the same form
///   and the value has that form's shape ([`crate::desensitize::Rule::could_have_given`]:
///   a value in clear under a form's name is withheld as not fitting it); it is withheld
///   ([`Withheld::OtherForm`]) when this node names another form;
/// - records of items this node refuses, or grants nothing of, leave no trace, nor do records
///   whose disclosure period has ended by `today` (promise 8 holds at every hop);
/// - what the other node withheld for every record is withheld here too, and recorded so.
///
/// Dates go with a record under this node's rule ([`crate::policy::RecordDates`]), judged on
/// what leaves here.
pub fn narrow(
    decision: &Decision<'_>,
    relayed: &[Relayed],
    withheld: &[(String, String, Withheld)],
    today: Date,
    key: &RecipientKey,
) -> Answer {
    let mut out = decided(decision);
    for (item, field, reason) in withheld {
        // The ledger records what left: a field the other node withheld was not granted.
        for (decided_field, outcome) in &mut out.decisions {
            let Some((i, f)) = decided_field.split_once('.') else {
                continue;
            };
            if i == item
                && (field.is_empty() || f == field)
                && matches!(outcome, Outcome::Granted(_))
            {
                *outcome = Outcome::Withheld(*reason);
            }
        }
        let granted_here = decision.items().iter().any(|i| {
            i.item() == item
                && i.refused().is_none()
                && i.fields().iter().any(|f| {
                    (field.is_empty() || f.field() == field)
                        && matches!(f.outcome(), Outcome::Granted(_))
                })
        });
        // What this node withholds it has reported already, with its own reason.
        if granted_here {
            out.withheld.push((item.clone(), field.clone(), *reason));
        }
    }
    for item in decision.items() {
        let forms = item.fields();
        if item.refused().is_some()
            || !forms
                .iter()
                .any(|f| matches!(f.outcome(), Outcome::Granted(_)))
        {
            continue;
        }
        let current = |r: &&Relayed| r.disclosure_end.is_none_or(|end| today < end);
        for record in relayed
            .iter()
            .filter(|r| r.item == item.item())
            .filter(current)
        {
            let raw: Vec<(&str, &str)> = record
                .fields
                .iter()
                .filter(|(_, _, form)| form == "raw")
                .map(|(name, value, _)| (name.as_str(), value.as_str()))
                .collect();
            let Ok(disclosed) = decision.disclose(item.item(), raw.as_slice(), key) else {
                continue;
            };
            let mut fields = Vec::new();
            let mut record_withheld = Vec::new();
            for f in forms {
                let Outcome::Granted(here) = f.outcome() else {
                    continue;
                };
                let name = f.field();
                if let Some((_, why)) = disclosed.withheld.iter().find(|(n, _)| *n == name) {
                    record_withheld.push((name.to_owned(), *why));
                    continue;
                }
                let sent = record.fields.iter().find(|(n, _, _)| n == name);
                match sent {
                    Some((_, _, form)) if form == "raw" => {
                        if let Some((_, value)) = disclosed.fields.iter().find(|(n, _)| *n == name)
                        {
                            fields.push((name.to_owned(), value.clone(), here));
                        }
                    }
                    Some((_, value, form)) => match (form.parse::<Form>(), here) {
                        (Ok(there), Form::Raw) => {
                            fields.push((name.to_owned(), value.clone(), there));
                        }
                        (Ok(there), Form::Rule(rule)) if there == here => {
                            if rule.could_have_given(value, key) {
                                fields.push((name.to_owned(), value.clone(), there));
                            } else {
                                record_withheld
                                    .push((name.to_owned(), Withheld::NotDesensitizable));
                            }
                        }
                        _ => record_withheld.push((name.to_owned(), Withheld::OtherForm)),
                    },
                    None => {
                        if let Some((_, why)) = record.withheld.iter().find(|(n, _)| n == name) {
                            record_withheld.push((name.to_owned(), *why));
                        }
                    }
                }
            }
            let raw_sent: Vec<(&str, String)> = fields
                .iter()
                .filter(|(_, _, form)| *form == Form::Raw)
                .map(|(name, value, _)| (name.as_str(), value.clone()))
                .collect();
            let dated = record
                .decision_date
                .is_some_and(|date| item.dates().decision_date(&raw_sent, date));
            out.records.push(RecordView {
                item: record.item.clone(),
                record_id: record.record_id,
                decision_date: record.decision_date.filter(|_| dated),
                disclosure_end: record
                    .disclosure_end
                    .filter(|_| dated && item.dates().disclosure_end_with(&raw_sent)),
                fields,
                withheld: record_withheld,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use time::macros::date;

    use super::*;
    use crate::{
        catalog::{Severity, testing},
        desensitize::PseudonymKey,
        identity::SpiffeId,
        policy::{ItemRequest, decide},
        records::{Basis, Restoration},
    };

    const SUBJECT: &str = "91330100716105852F";

    fn registration() -> Record {
        Record {
            subject: SUBJECT.into(),
            item: "registration".into(),
            fields: BTreeMap::from(
                [
                    ("uscc", SUBJECT),
                    ("name", "杭州星河网络科技有限公司"),
                    ("status", "存续"),
                    ("established", "2009-03-17"),
                    ("registered_capital", "1500000.00"),
                    ("division", "330106"),
                    ("legal_rep_name", "欧阳娜娜"),
                    ("legal_rep_id", "11010519491231002X"),
                    ("legal_rep_mobile", "13812341234"),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            ),
            basis: Basis {
                kind: "营业执照".into(),
                number: "330106000012345".into(),
                date: date!(2009 - 03 - 17),
                issuer: "samr".into(),
            },
            severity: None,
            decision_date: date!(2009 - 03 - 17),
            disclosure_end: None,
            restoration: None,
            designation: None,
        }
    }

    fn penalty(number: &str, decided: Date, end: Date) -> Record {
        Record {
            subject: SUBJECT.into(),
            item: "admin-penalty".into(),
            fields: BTreeMap::from(
                [
                    ("decision_no", number),
                    ("uscc", SUBJECT),
                    ("severity", "ordinary"),
                    ("penalty_type", "罚款"),
                    ("amount", "15000.00"),
                    ("decision_date", "2026-05-01"),
                    ("facts", "未按规定公示年度报告"),
                    ("legal_rep_id", "11010519491231002X"),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            ),
            basis: Basis {
                kind: "行政处罚决定书".into(),
                number: number.into(),
                date: decided,
                issuer: "samr".into(),
            },
            severity: Some(Severity::Ordinary),
            decision_date: decided,
            disclosure_end: Some(end),
            restoration: None,
            designation: None,
        }
    }

    fn ask(caller: &str, purpose: &str, items: &[ItemRequest], records: &[Record]) -> Answer {
        let catalog = testing::demo();
        let caller = SpiffeId::parse(caller).unwrap();
        let decision = decide(&catalog, &caller, purpose, items);
        let secret = PseudonymKey::from_hex(&"ab".repeat(32)).unwrap();
        let key = secret.recipient_key(&caller);
        answer(
            &decision,
            records,
            date!(2026 - 11 - 23),
            &key,
            &secret.record_ids(),
        )
    }

    fn value<'a>(answer: &'a Answer, item: &str, field: &str) -> Option<(&'a str, String)> {
        let r = answer.records.iter().find(|r| r.item == item)?;
        r.fields
            .iter()
            .find(|(f, _, _)| f == field)
            .map(|(_, v, form)| (v.as_str(), form.to_string()))
    }

    /// What a holding node sends for `answer`: its records, forms spelled as on the wire.
    fn as_sent(answer: &Answer) -> Vec<Relayed> {
        answer
            .records
            .iter()
            .map(|r| Relayed {
                item: r.item.clone(),
                record_id: r.record_id,
                decision_date: r.decision_date,
                disclosure_end: r.disclosure_end,
                fields: r
                    .fields
                    .iter()
                    .map(|(f, v, form)| (f.clone(), v.clone(), form.to_string()))
                    .collect(),
                withheld: r.withheld.clone(),
            })
            .collect()
    }

    /// `caller`'s answer here to what the holding node `sent` of its registration.
    fn narrowed(caller: &str, purpose: &str, sent: &[Relayed]) -> Answer {
        narrowed_of("registration", caller, purpose, sent)
    }

    /// `caller`'s answer here to what the holding node `sent` of `item`, on 2026-11-23.
    fn narrowed_of(item: &str, caller: &str, purpose: &str, sent: &[Relayed]) -> Answer {
        let catalog = testing::demo();
        let caller = SpiffeId::parse(caller).unwrap();
        let all = [ItemRequest::all(item)];
        let decision = decide(&catalog, &caller, purpose, &all);
        let secret = PseudonymKey::from_hex(&"cd".repeat(32)).unwrap();
        narrow(
            &decision,
            sent,
            &[],
            date!(2026 - 11 - 23),
            &secret.recipient_key(&caller),
        )
    }

    #[test]
    fn a_hop_passes_on_no_more_than_its_own_decision() {
        let all = [ItemRequest::all("registration")];
        let records = [registration()];
        let court = "spiffe://region-a.credit.test/dept/court";
        let tax_a = "spiffe://region-a.credit.test/dept/tax";
        let tax_b = "spiffe://region-b.credit.test/dept/tax";
        let raw = as_sent(&ask(court, "enforcement", &all, &records));

        // Sent raw, granted here in a form: the form is applied here; fields not granted here
        // (the mobile number) do not pass, whatever was sent.
        let here = narrowed(tax_a, "tax-administration", &raw);
        assert_eq!(
            value(&here, "registration", "legal_rep_id"),
            Some(("1****************X", "resident_id".into()))
        );
        assert_eq!(value(&here, "registration", "legal_rep_mobile"), None);
        assert!(!format!("{here:?}").contains("13812341234"));

        // Sent in a form, granted raw here: it passes as sent, never "unmasked".
        let masked = as_sent(&ask(tax_a, "tax-administration", &all, &records));
        let here = narrowed(court, "enforcement", &masked);
        assert_eq!(
            value(&here, "registration", "legal_rep_id"),
            Some(("1****************X", "resident_id".into()))
        );

        // Sent in another form than the one named here: withheld, with that reason.
        let pseudonymised = as_sent(&ask(tax_b, "tax-administration", &all, &records));
        let here = narrowed(tax_a, "tax-administration", &pseudonymised);
        assert_eq!(value(&here, "registration", "legal_rep_id"), None);
        let record = &here.records[0];
        assert!(
            record
                .withheld
                .contains(&("legal_rep_id".to_owned(), Withheld::OtherForm)),
            "{record:?}"
        );
        assert_eq!(here.kind(), AnswerKind::PartlyWithheld);

        // A caller granted nothing here receives nothing of what was sent.
        let here = narrowed(court, "no-such-purpose", &raw);
        assert!(here.records.is_empty());
        assert_eq!(here.kind(), AnswerKind::Denied);
    }

    #[test]
    fn a_hop_checks_what_it_is_sent_against_its_own_rules() {
        let court = "spiffe://region-a.credit.test/dept/court";
        let tax_a = "spiffe://region-a.credit.test/dept/tax";
        let registrations = [ItemRequest::all("registration")];
        // A value in clear under the name of the form granted here: withheld, not passed on.
        let mut mislabelled = as_sent(&ask(
            court,
            "enforcement",
            &registrations,
            &[registration()],
        ));
        for (field, _, form) in &mut mislabelled[0].fields {
            if field == "legal_rep_id" {
                *form = "resident_id".into();
            }
        }
        let here = narrowed(tax_a, "tax-administration", &mislabelled);
        assert_eq!(value(&here, "registration", "legal_rep_id"), None);
        assert!(!format!("{here:?}").contains("11010519491231002X"));
        assert!(
            here.records[0]
                .withheld
                .contains(&("legal_rep_id".to_owned(), Withheld::NotDesensitizable))
        );

        // A penalty whose period ends today is no longer shared, whatever was sent.
        let penalties = [ItemRequest::all("admin-penalty")];
        let current = penalty(
            "浙市监罚〔2026〕1号",
            date!(2026 - 05 - 01),
            date!(2027 - 05 - 01),
        );
        let sent = as_sent(&ask(court, "enforcement", &penalties, &[current]));
        let here = narrowed_of("admin-penalty", court, "enforcement", &sent);
        assert_eq!(here.records.len(), 1);
        assert_eq!(here.records[0].disclosure_end, Some(date!(2027 - 05 - 01)));
        let mut ended = sent.clone();
        ended[0].disclosure_end = Some(date!(2026 - 11 - 23));
        assert!(
            narrowed_of("admin-penalty", court, "enforcement", &ended)
                .records
                .is_empty()
        );

        // The period's end tells the severity: without the severity sent raw, no end goes out,
        // though this node grants the severity raw.
        let mut no_severity = sent.clone();
        no_severity[0]
            .fields
            .retain(|(field, _, _)| field != "severity");
        let here = narrowed_of("admin-penalty", court, "enforcement", &no_severity);
        assert_eq!(here.records[0].decision_date, Some(date!(2026 - 05 - 01)));
        assert_eq!(here.records[0].disclosure_end, None);
    }

    #[test]
    fn what_the_holding_node_withheld_is_recorded_as_withheld() {
        let court = "spiffe://region-a.credit.test/dept/court";
        let catalog = testing::demo();
        let caller = SpiffeId::parse(court).unwrap();
        let all = [ItemRequest::all("registration")];
        let decision = decide(&catalog, &caller, "enforcement", &all);
        let key = PseudonymKey::from_hex(&"cd".repeat(32))
            .unwrap()
            .recipient_key(&caller);
        let refused = [(
            "registration".to_owned(),
            String::new(),
            Withheld::CallerNotGranted,
        )];
        let here = narrow(&decision, &[], &refused, date!(2026 - 11 - 23), &key);
        assert_eq!(here.kind(), AnswerKind::Denied);
        assert!(
            here.decisions
                .iter()
                .all(|(_, o)| *o == Outcome::Withheld(Withheld::CallerNotGranted)),
            "{:?}",
            here.decisions
        );
    }

    #[test]
    fn each_caller_gets_its_own_form_of_the_same_record() {
        let records = [registration()];
        let all = [ItemRequest::all("registration")];
        let a = ask(
            "spiffe://region-a.credit.test/dept/tax",
            "tax-administration",
            &all,
            &records,
        );
        let b = ask(
            "spiffe://region-b.credit.test/dept/tax",
            "tax-administration",
            &all,
            &records,
        );
        let court = ask(
            "spiffe://region-a.credit.test/dept/court",
            "enforcement",
            &all,
            &records,
        );

        assert_eq!(
            value(&a, "registration", "legal_rep_id"),
            Some(("1****************X", "resident_id".into()))
        );
        assert_eq!(
            value(&a, "registration", "legal_rep_name"),
            Some(("欧阳**", "chinese_name".into()))
        );
        let (pseudonym, form) = value(&b, "registration", "legal_rep_id").unwrap();
        assert!(
            pseudonym.starts_with("p_") && form == "pseudonym",
            "{pseudonym}"
        );
        assert_eq!(
            value(&court, "registration", "legal_rep_id"),
            Some(("11010519491231002X", "raw".into()))
        );
        assert_eq!(
            value(&court, "registration", "legal_rep_mobile"),
            Some(("13812341234", "raw".into()))
        );

        assert_eq!(value(&a, "registration", "legal_rep_mobile"), None);
        assert!(a.withheld.contains(&(
            "registration".into(),
            "legal_rep_mobile".into(),
            Withheld::FieldNotGranted
        )));
        assert_eq!(a.kind(), AnswerKind::PartlyWithheld);
        assert_eq!(court.kind(), AnswerKind::Granted);
        // Nothing personal reaches region A's tax bureau in clear.
        let rendered = format!("{a:?}");
        assert!(!rendered.contains("11010519491231002X") && !rendered.contains("13812341234"));
    }

    #[test]
    fn expired_and_restored_records_leave_no_trace() {
        let current = penalty(
            "京市监罚〔2026〕1号",
            date!(2026 - 05 - 01),
            date!(2027 - 05 - 01),
        );
        let expired = penalty(
            "京市监罚〔2024〕7号",
            date!(2024 - 05 - 01),
            date!(2025 - 05 - 01),
        );
        let mut restored = penalty(
            "京市监罚〔2026〕2号",
            date!(2026 - 06 - 01),
            date!(2027 - 06 - 01),
        );
        restored.restoration = Some(Restoration {
            on: date!(2026 - 10 - 01),
            basis: "信用修复决定〔2026〕3号".into(),
        });
        let answer = ask(
            "spiffe://region-a.credit.test/dept/tax",
            "public-procurement",
            &[ItemRequest::all("admin-penalty")],
            &[current, expired, restored],
        );
        assert_eq!(answer.records.len(), 1);
        let rendered = format!("{answer:?}");
        assert!(rendered.contains("〔2026〕1号"));
        assert!(
            !rendered.contains("〔2024〕7号") && !rendered.contains("〔2026〕2号"),
            "{rendered}"
        );
        assert_eq!(
            value(&answer, "admin-penalty", "amount"),
            Some(("10000-20000", "generalise(amount,10000)".into()))
        );
    }

    /// Promise 2 for the record's own dates: the decision date goes only with a date field the
    /// answer carries raw that holds it (a penalty's `decision_date`, a registration's
    /// `established`); the period's end only with `severity` too, since its distance from the
    /// decision date tells the severity.
    #[test]
    fn record_dates_obey_the_fields_they_would_reveal() {
        let record = penalty(
            "京市监罚〔2026〕1号",
            date!(2026 - 05 - 01),
            date!(2027 - 05 - 01),
        );
        let dates = |fields: &[&str]| {
            let answer = ask(
                "spiffe://region-a.credit.test/dept/tax",
                "public-procurement",
                &[ItemRequest::fields("admin-penalty", fields)],
                std::slice::from_ref(&record),
            );
            let [view] = answer.records.as_slice() else {
                panic!("one record: {answer:?}");
            };
            (view.decision_date, view.disclosure_end)
        };
        assert_eq!(dates(&["decision_no"]), (None, None));
        assert_eq!(
            dates(&["decision_no", "decision_date"]),
            (Some(date!(2026 - 05 - 01)), None)
        );
        assert_eq!(dates(&["decision_no", "severity"]), (None, None));
        assert_eq!(
            dates(&["decision_no", "decision_date", "severity"]),
            (Some(date!(2026 - 05 - 01)), Some(date!(2027 - 05 - 01)))
        );
        // A registration's decision date is its `established` date: it goes out with that
        // field, raw, and only when the two agree.
        let registration_dates = |fields: &[&str], record: Record| {
            let answer = ask(
                "spiffe://region-a.credit.test/dept/tax",
                "tax-administration",
                &[ItemRequest::fields("registration", fields)],
                &[record],
            );
            let [view] = answer.records.as_slice() else {
                panic!("one record: {answer:?}");
            };
            (view.decision_date, view.disclosure_end)
        };
        assert_eq!(registration_dates(&["uscc"], registration()), (None, None));
        assert_eq!(
            registration_dates(&["uscc", "established"], registration()),
            (Some(date!(2009 - 03 - 17)), None)
        );
        let mut later = registration();
        later.decision_date = date!(2010 - 01 - 04);
        assert_eq!(
            registration_dates(&["uscc", "established"], later),
            (None, None)
        );
    }

    #[test]
    fn refused_items_disclose_nothing_and_say_why() {
        let records = [registration()];
        let officer = ask(
            "spiffe://region-a.credit.test/officer/auditor",
            "tax-administration",
            &[ItemRequest::all("registration")],
            &records,
        );
        assert!(officer.records.is_empty());
        assert_eq!(officer.kind(), AnswerKind::Denied);
        let unknown = ask(
            "spiffe://region-a.credit.test/dept/tax",
            "tax-administration",
            &[
                ItemRequest::all("no-such-item"),
                ItemRequest::all("inspection-notes"),
            ],
            &records,
        );
        assert!(unknown.records.is_empty());
        let reasons: Vec<Withheld> = unknown.withheld.iter().map(|w| w.2).collect();
        assert_eq!(reasons, vec![Withheld::NotInCatalog, Withheld::NotShared]);
    }
}
