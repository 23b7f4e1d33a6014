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

/// Why a record this node had been sharing is shared no more. Its recipients are told (design.md
/// section 7: after restoration the information is no longer shared with departments), since
/// promise 8 alone only keeps it out of answers from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WithdrawalReason {
    Restored,
    RemovedFromList,
}

impl WithdrawalReason {
    /// The word the store keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            WithdrawalReason::Restored => "restored",
            WithdrawalReason::RemovedFromList => "removed_from_list",
        }
    }

    pub fn parse(text: &str) -> Option<WithdrawalReason> {
        match text {
            "restored" => Some(WithdrawalReason::Restored),
            "removed_from_list" => Some(WithdrawalReason::RemovedFromList),
            _ => None,
        }
    }
}

/// A withdrawn record as its recipients learn of it: what names it to them and when and why it
/// ended, never its subject or fields (a notice must not disclose more than the record did).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withdrawal {
    /// The record's key ([`Record::key`]); it leaves the node only as a [`RecordId`].
    pub key: [u8; 32],
    pub item: String,
    /// When this node recorded the withdrawal, by its clock (Unix milliseconds).
    pub withdrawn_ms: i64,
    pub reason: WithdrawalReason,
    /// The restoration's or the removal's date.
    pub on: Date,
}

/// A record's public id, as recipients see it and operators restore by: its key
/// ([`Record::key`]) encrypted under a node secret ([`RecordIds`]), so stable and unique, yet
/// telling nothing of the record.
///
/// Why not the key itself, a SHA-256 of subject, item and basis document: a recipient knows the
/// subject, the item and the kind of document, and a basis number such as `京市监罚〔2026〕1号`
/// has a known form and few likely values, so the digest is reversed by enumeration and gives
/// the number away to a recipient the catalog does not grant it (design.md section 7:
/// predictable values need a secret).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordId([u8; 16]);

impl RecordId {
    /// Parses the 32 hexadecimal digits `Display` writes.
    pub fn parse(text: &str) -> Option<RecordId> {
        crate::ledger::hex::decode_array::<16>(text).map(RecordId)
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::ledger::hex::encode(&self.0))
    }
}

/// Turns record keys into [`RecordId`]s and back: AES-128 of the key's first half, under a key
/// only the node holds. A block cipher rather than a keyed hash because the node must find the
/// record an id names: decrypting gives back the key's first half, which the store looks up by
/// range on its primary key, with no second index to keep at every ingest. Half a SHA-256
/// (128 bits) is as unique as the ids need.
#[derive(Clone)]
pub struct RecordIds(aes::Aes128);

impl RecordIds {
    pub fn new(secret: [u8; 16]) -> Self {
        use aes::cipher::KeyInit as _;
        Self(aes::Aes128::new(&secret.into()))
    }

    pub fn id_of(&self, key: &[u8; 32]) -> RecordId {
        use aes::cipher::BlockEncrypt as _;
        let mut block = aes::Block::clone_from_slice(&key[..16]);
        self.0.encrypt_block(&mut block);
        RecordId(block.into())
    }

    /// The first half of the key of the record `id` names (if it names one).
    pub fn key_prefix(&self, id: &RecordId) -> [u8; 16] {
        use aes::cipher::BlockDecrypt as _;
        let mut block = aes::Block::from(id.0);
        self.0.decrypt_block(&mut block);
        block.into()
    }
}

impl std::fmt::Debug for RecordIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordIds(..)")
    }
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
    /// re-ingesting a file creates no duplicates. SHA-256 over length-prefixed parts. It never
    /// leaves the node: recipients see its [`RecordId`].
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

    #[test]
    fn record_ids_name_one_record_each_and_reveal_nothing_without_the_secret() {
        let ids = RecordIds::new([7; 16]);
        let a = record();
        let mut b = record();
        b.basis.number = "京市监罚〔2026〕2号".into();
        let (id_a, id_b) = (ids.id_of(&a.key()), ids.id_of(&b.key()));
        assert_ne!(id_a, id_b);
        assert_eq!(
            ids.key_prefix(&id_a),
            a.key()[..16],
            "the node finds the record"
        );
        assert_eq!(RecordId::parse(&id_a.to_string()), Some(id_a));
        // Not the key (nor any digest a recipient could compute), and another node's secret
        // gives other ids.
        assert_ne!(id_a.0, a.key()[..16]);
        assert_ne!(RecordIds::new([8; 16]).id_of(&a.key()), id_a);
        assert_eq!(
            RecordId::parse(&"ab".repeat(32)),
            None,
            "the old 64-digit form"
        );
    }
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
