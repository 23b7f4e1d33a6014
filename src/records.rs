//! The credit records a department's node holds, as plain domain types.
//!
//! A record is one fact of one catalog item about one subject, resting on a legally effective
//! basis document (design.md section 1: a record without its basis is refused). Whether it may
//! be shared today is a pure function of the record and today's date ([`Record::disclosable`]),
//! so promise 8 (expired and restored records are not shared) is enforced at query time, not by
//! a cleanup job.
//!
//! Architecture invariant: pure: no I/O, no clock; `store` persists these types and `ingest`
//! produces them.

use std::collections::BTreeMap;

use time::Date;

use crate::catalog::Severity;

/// The legally effective document a record rests on (a penalty decision, a court ruling ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Basis {
    /// e.g. `行政处罚决定书`, `判决书`.
    pub kind: String,
    /// The document's number, e.g. `京市监罚〔2026〕123号`.
    pub number: String,
    pub date: Date,
    /// Code of the department that issued it.
    pub issuer: String,
}

/// Credit restoration: publication ends and the record is no longer shared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restoration {
    pub on: Date,
    /// The restoration decision the record's withdrawal rests on.
    pub basis: String,
}

/// A designation on a list (the list of seriously untrustworthy entities): narrow, with
/// removal conditions, and shared only while not removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Designation {
    pub designated_on: Date,
    pub removal_conditions: String,
    pub removed_on: Option<Date>,
    pub removal_basis: Option<String>,
}

/// A stored record's public id, as recipients see it and operators restore by: random,
/// assigned by the store when the record is first stored, and kept by every re-ingest.
///
/// Why not a digest of the record's identity ([`Record::key`]): the subject, item and basis
/// kind are known to a recipient, and a basis number such as `京市监罚〔2026〕1号` has a known
/// form and little entropy, so such a digest is reversed by enumeration and would disclose
/// the basis number to a recipient the catalog grants the item but not that field (design.md
/// section 7: predictable values need a secret, or no digest at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordId(pub [u8; 16]);

impl RecordId {
    /// Parses the 32 lower- or upper-case hexadecimal digits [`RecordId`]'s `Display` writes.
    pub fn parse(text: &str) -> Option<RecordId> {
        crate::ledger::hex::decode_array::<16>(text).map(RecordId)
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::ledger::hex::encode(&self.0))
    }
}

/// A record as the store holds it, with the id it was given there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub id: RecordId,
    pub record: Record,
}

/// One credit record. `subject` is the canonical identifier (USCC or resident identity number,
/// upper case), already validated against the item's subject type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub subject: String,
    pub item: String,
    /// Field values as text, validated against the catalog's field types at ingest.
    pub fields: BTreeMap<String, String>,
    pub basis: Basis,
    /// Severity class, for items with disclosure periods.
    pub severity: Option<Severity>,
    pub decision_date: Date,
    /// First day the record is no longer disclosed, derived from the catalog at ingest;
    /// `None` for items without a disclosure period.
    pub disclosure_end: Option<Date>,
    pub restoration: Option<Restoration>,
    pub designation: Option<Designation>,
}

/// Why a stored record is not shared today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotDisclosable {
    Expired,
    Restored,
    RemovedFromList,
}

impl Record {
    /// SHA-256 of everything the record says, so ingest can tell a repeated row (same content:
    /// collapsed) from a conflicting one (same key, other content: refused) without keeping
    /// the rows. Every field is destructured, so a new field cannot be left out unnoticed.
    pub fn content_digest(&self) -> [u8; 32] {
        let Record {
            subject,
            item,
            fields,
            basis:
                Basis {
                    kind,
                    number,
                    date,
                    issuer,
                },
            severity,
            decision_date,
            disclosure_end,
            restoration,
            designation,
        } = self;
        let mut d = Digest(ring::digest::Context::new(&ring::digest::SHA256));
        d.text(subject);
        d.text(item);
        d.count(fields.len());
        for (name, value) in fields {
            d.text(name);
            d.text(value);
        }
        d.text(kind);
        d.text(number);
        d.date(Some(*date));
        d.text(issuer);
        d.text(severity.map_or("", |s| s.as_str()));
        d.date(Some(*decision_date));
        d.date(*disclosure_end);
        match restoration {
            None => d.count(0),
            Some(Restoration { on, basis }) => {
                d.count(1);
                d.date(Some(*on));
                d.text(basis);
            }
        }
        match designation {
            None => d.count(0),
            Some(Designation {
                designated_on,
                removal_conditions,
                removed_on,
                removal_basis,
            }) => {
                d.count(1);
                d.date(Some(*designated_on));
                d.text(removal_conditions);
                d.date(*removed_on);
                d.count(usize::from(removal_basis.is_some()));
                d.text(removal_basis.as_deref().unwrap_or(""));
            }
        }
        d.finish()
    }

    /// Idempotency key: the same subject, item and basis document is the same record, so
    /// re-ingesting a file creates no duplicates. SHA-256 over length-prefixed parts. Internal
    /// to the store: it never leaves the node (see [`RecordId`]).
    pub fn key(&self) -> [u8; 32] {
        let mut d = Digest(ring::digest::Context::new(&ring::digest::SHA256));
        for part in [
            self.subject.as_str(),
            self.item.as_str(),
            self.basis.kind.as_str(),
            self.basis.number.as_str(),
        ] {
            d.text(part);
        }
        d.finish()
    }

    /// Whether the record may be shared on `today`.
    pub fn disclosable(&self, today: Date) -> Result<(), NotDisclosable> {
        if self.restoration.as_ref().is_some_and(|r| r.on <= today) {
            return Err(NotDisclosable::Restored);
        }
        if self
            .designation
            .as_ref()
            .and_then(|d| d.removed_on)
            .is_some_and(|removed| removed <= today)
        {
            return Err(NotDisclosable::RemovedFromList);
        }
        if self.disclosure_end.is_some_and(|end| end <= today) {
            return Err(NotDisclosable::Expired);
        }
        Ok(())
    }
}

/// Unambiguous input to a digest: every part length-prefixed or tagged.
struct Digest(ring::digest::Context);

impl Digest {
    fn count(&mut self, n: usize) {
        self.0.update(&(n as u64).to_be_bytes());
    }

    fn text(&mut self, s: &str) {
        self.count(s.len());
        self.0.update(s.as_bytes());
    }

    fn date(&mut self, d: Option<Date>) {
        match d {
            None => self.0.update(&[0]),
            Some(d) => {
                self.0.update(&[1]);
                self.0.update(&d.to_julian_day().to_be_bytes());
            }
        }
    }

    fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn record() -> Record {
        Record {
            subject: "91110000100000000X".into(),
            item: "admin-penalty".into(),
            fields: BTreeMap::new(),
            basis: Basis {
                kind: "行政处罚决定书".into(),
                number: "京市监罚〔2026〕1号".into(),
                date: date!(2026 - 05 - 01),
                issuer: "samr".into(),
            },
            severity: Some(Severity::Ordinary),
            decision_date: date!(2026 - 05 - 01),
            disclosure_end: Some(date!(2027 - 05 - 01)),
            restoration: None,
            designation: None,
        }
    }

    #[test]
    fn disclosure_ends_on_its_end_date_restoration_and_removal() {
        let r = record();
        assert_eq!(r.disclosable(date!(2027 - 04 - 30)), Ok(()));
        assert_eq!(
            r.disclosable(date!(2027 - 05 - 01)),
            Err(NotDisclosable::Expired)
        );

        let mut restored = record();
        restored.restoration = Some(Restoration {
            on: date!(2026 - 09 - 01),
            basis: "信用修复决定〔2026〕9号".into(),
        });
        assert_eq!(restored.disclosable(date!(2026 - 08 - 31)), Ok(()));
        assert_eq!(
            restored.disclosable(date!(2026 - 09 - 01)),
            Err(NotDisclosable::Restored)
        );

        let mut listed = record();
        listed.designation = Some(Designation {
            designated_on: date!(2026 - 05 - 01),
            removal_conditions: "履行完毕并公开承诺".into(),
            removed_on: Some(date!(2026 - 12 - 01)),
            removal_basis: Some("移出决定".into()),
        });
        assert_eq!(listed.disclosable(date!(2026 - 11 - 30)), Ok(()));
        assert_eq!(
            listed.disclosable(date!(2026 - 12 - 01)),
            Err(NotDisclosable::RemovedFromList)
        );
    }

    #[test]
    fn content_digest_changes_with_any_part_of_the_record() {
        let a = record();
        assert_eq!(a.content_digest(), a.clone().content_digest());
        let variants: [fn(&mut Record); 6] = [
            |r| {
                r.fields.insert("amount".into(), "5000".into());
            },
            |r| r.basis.issuer = "other".into(),
            |r| r.decision_date = date!(2026 - 01 - 02),
            |r| r.disclosure_end = None,
            |r| {
                r.restoration = Some(Restoration {
                    on: date!(2026 - 06 - 01),
                    basis: String::new(),
                })
            },
            |r| {
                r.designation = Some(Designation {
                    designated_on: date!(2026 - 06 - 01),
                    removal_conditions: String::new(),
                    removed_on: None,
                    removal_basis: None,
                })
            },
        ];
        for (i, change) in variants.iter().enumerate() {
            let mut b = record();
            change(&mut b);
            assert_ne!(a.content_digest(), b.content_digest(), "variant {i}");
        }
    }

    #[test]
    fn key_depends_on_subject_item_and_basis_only() {
        let a = record();
        let mut b = record();
        b.fields.insert("amount".into(), "5000".into());
        assert_eq!(a.key(), b.key(), "same record, other field values");
        b.basis.number = "京市监罚〔2026〕2号".into();
        assert_ne!(a.key(), b.key());
    }
}
