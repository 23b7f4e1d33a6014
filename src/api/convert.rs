//! Domain types to protobuf messages, in one place.

use crate::{
    catalog::SignedCatalog,
    identity::{Caller, Kind},
    policy::PurposeGrants,
    proto,
};

pub fn kind(kind: Kind) -> proto::PrincipalKind {
    match kind {
        Kind::Dept => proto::PrincipalKind::Dept,
        Kind::Officer => proto::PrincipalKind::Officer,
        Kind::Operator => proto::PrincipalKind::Operator,
    }
}

pub fn identity(caller: &Caller) -> proto::Identity {
    let id = &caller.spiffe_id;
    proto::Identity {
        spiffe_id: id.to_string(),
        trust_domain: id.trust_domain().to_string(),
        kind: kind(id.kind()).into(),
        id: id.id().to_owned(),
        certificate_serial: caller.serial.clone(),
        certificate_not_after: rfc3339(caller.not_after_unix),
        certificate_sha256: crate::tls::hex(&caller.fingerprint),
    }
}

/// RFC 3339 in UTC; an out-of-range timestamp (not producible by a valid certificate) is shown
/// as its raw number rather than failing the call.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

pub fn grants(
    catalog: &SignedCatalog,
    grants: Vec<PurposeGrants>,
) -> proto::DescribeGrantsResponse {
    let cat = catalog.catalog();
    proto::DescribeGrantsResponse {
        catalog_version: cat.version.clone(),
        catalog_sha256: catalog.digest_hex(),
        purposes: grants
            .into_iter()
            .map(|p| proto::PurposeGrants {
                purpose: p.purpose,
                items: p
                    .items
                    .into_iter()
                    .map(|i| proto::ItemGrants {
                        item_name: cat
                            .item(&i.item)
                            .map(|it| it.name.clone())
                            .unwrap_or_default(),
                        item: i.item,
                        fields: i
                            .fields
                            .into_iter()
                            .map(|f| proto::FieldGrant {
                                field: f.field,
                                form: f.form.to_string(),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Bounds on a query's shape: a request bigger than this is malformed, not merely large.
const MAX_ITEMS: usize = 64;
const MAX_FIELDS: usize = 64;
const MAX_TEXT: usize = 200;

/// Validates and canonicalises a query's subject; the message names the field and says what is
/// wrong (length, character, check character expected vs found).
pub fn subject(
    field: &str,
    value: &str,
    kind: proto::SubjectType,
    today: time::Date,
) -> Result<String, tonic::Status> {
    use crate::identifier::{ResidentId, Subject, Uscc};
    let parsed = match kind {
        proto::SubjectType::LegalPerson => Uscc::parse(value).map(|u| u.to_string()),
        proto::SubjectType::NaturalPerson => {
            ResidentId::parse_as_of(value, today).map(|r| r.to_string())
        }
        proto::SubjectType::Unspecified => Subject::parse(value).map(|s| s.to_string()),
    };
    parsed.map_err(|e| tonic::Status::invalid_argument(format!("{field}: {e}")))
}

/// Items, purpose and basis of a query, checked against the catalog in force.
pub fn selection(
    catalog: &SignedCatalog,
    items: &[proto::ItemSelection],
    purpose: &str,
    basis: &str,
) -> Result<(Vec<crate::policy::ItemRequest>, String, String), tonic::Status> {
    use tonic::Status;
    let cat = catalog.catalog();
    if purpose.is_empty() {
        return Err(Status::invalid_argument(
            "purpose: required (a purpose id of the catalog; see DescribeGrants)",
        ));
    }
    if !cat.has_purpose(purpose) {
        let shown: String = purpose.chars().take(64).collect();
        return Err(Status::invalid_argument(format!(
            "purpose: {shown:?} is not a purpose the catalog declares"
        )));
    }
    let basis = basis.trim();
    if basis.is_empty() {
        return Err(Status::invalid_argument(
            "basis_reference: required (the legal basis or case the query rests on)",
        ));
    }
    if basis.chars().count() > MAX_TEXT {
        return Err(Status::invalid_argument(format!(
            "basis_reference: longer than {MAX_TEXT} characters"
        )));
    }
    if items.len() > MAX_ITEMS {
        return Err(Status::invalid_argument(format!(
            "items: more than {MAX_ITEMS} items"
        )));
    }
    let requests = if items.is_empty() {
        cat.items
            .iter()
            .map(|i| crate::policy::ItemRequest::all(&i.id))
            .collect()
    } else {
        let mut requests = Vec::with_capacity(items.len());
        for (i, sel) in items.iter().enumerate() {
            if sel.item.is_empty() || sel.item.len() > MAX_TEXT {
                return Err(Status::invalid_argument(format!(
                    "items[{i}].item: required, at most {MAX_TEXT} bytes"
                )));
            }
            if sel.fields.len() > MAX_FIELDS {
                return Err(Status::invalid_argument(format!(
                    "items[{i}].fields: more than {MAX_FIELDS} fields"
                )));
            }
            if let Some(j) = sel
                .fields
                .iter()
                .position(|f| f.is_empty() || f.len() > MAX_TEXT)
            {
                return Err(Status::invalid_argument(format!(
                    "items[{i}].fields[{j}]: empty or too long"
                )));
            }
            requests.push(crate::policy::ItemRequest {
                item: sel.item.clone(),
                fields: sel.fields.clone(),
            });
        }
        requests
    };
    Ok((requests, purpose.to_owned(), basis.to_owned()))
}

pub fn query_result(
    subject: &str,
    answer: &crate::query::Answer,
    catalog: &SignedCatalog,
) -> proto::QueryResult {
    let withheld =
        |item: &str, field: &str, reason: crate::policy::Withheld| proto::WithheldField {
            item: item.to_owned(),
            field: field.to_owned(),
            reason: reason.as_str().to_owned(),
        };
    proto::QueryResult {
        subject: subject.to_owned(),
        records: answer
            .records
            .iter()
            .map(|r| proto::RecordView {
                item: r.item.clone(),
                record_id: r.record_id.clone(),
                decision_date: r.decision_date.to_string(),
                disclosure_end: r.disclosure_end.map(|d| d.to_string()).unwrap_or_default(),
                fields: r
                    .fields
                    .iter()
                    .map(|(field, value, form)| proto::FieldValue {
                        field: field.clone(),
                        value: value.clone(),
                        form: form.to_string(),
                    })
                    .collect(),
                withheld: r
                    .withheld
                    .iter()
                    .map(|(f, why)| withheld(&r.item, f, *why))
                    .collect(),
            })
            .collect(),
        withheld: answer
            .withheld
            .iter()
            .map(|(i, f, why)| withheld(i, f, *why))
            .collect(),
        catalog_version: catalog.catalog().version.clone(),
        catalog_sha256: catalog.digest_hex(),
    }
}

pub fn receipt(
    receipt: &crate::ledger::store::Receipt,
    result_sha256: &[u8; 32],
) -> proto::Receipt {
    proto::Receipt {
        sequence: receipt.seq,
        leaf_hash: receipt.leaf_hash.to_vec(),
        result_sha256: result_sha256.to_vec(),
    }
}
