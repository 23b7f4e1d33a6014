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
