//! Writing a record in the JSON Lines ingest format, so that generated or exported records
//! re-ingest to equal records.

use serde_json::{Value, json};

use crate::records::Record;

/// One JSON Lines row (without the trailing newline) that [`super::validate`] turns back into
/// an equal record. `disclosure_end` is not written: ingest derives it from the catalog.
pub fn to_json_line(r: &Record) -> String {
    let mut row = json!({
        "subject": r.subject,
        "item": r.item,
        "fields": r.fields,
        "basis": {
            "kind": r.basis.kind,
            "number": r.basis.number,
            "date": r.basis.date.to_string(),
            "issuer": r.basis.issuer,
        },
        "decision_date": r.decision_date.to_string(),
    });
    if let Value::Object(map) = &mut row {
        if let Some(s) = r.severity {
            map.insert("severity".into(), s.as_str().into());
        }
        if let Some(x) = &r.restoration {
            map.insert(
                "restoration".into(),
                json!({"on": x.on.to_string(), "basis": x.basis}),
            );
        }
        if let Some(d) = &r.designation {
            map.insert(
                "designation".into(),
                json!({
                    "designated_on": d.designated_on.to_string(),
                    "removal_conditions": d.removal_conditions,
                    "removed_on": d.removed_on.map(|x| x.to_string()),
                    "removal_basis": d.removal_basis,
                }),
            );
        }
    }
    row.to_string()
}

/// Writes `records` as an ingest CSV file: the fixed columns, then one column per field name
/// used by any of them (sorted), each row filling its own item's fields only. A field named
/// like a fixed column shares it (see "Echo fields" in the module documentation).
pub fn write_csv<W: std::io::Write>(records: &[Record], out: W) -> Result<(), csv::Error> {
    let names: std::collections::BTreeSet<&str> = records
        .iter()
        .flat_map(|r| r.fields.keys().map(String::as_str))
        // A field named like a fixed column (`severity`, `decision_date`) is carried by it.
        .filter(|n| !super::csv_rows::fixed_columns().any(|c| c == *n))
        .collect();
    let mut w = csv::Writer::from_writer(out);
    let mut header: Vec<&str> = super::csv_rows::fixed_columns().collect();
    header.extend(names.iter().copied());
    w.write_record(&header)?;
    for r in records {
        let date = |d: Option<time::Date>| d.map(|d| d.to_string()).unwrap_or_default();
        let rest = r.restoration.as_ref();
        let des = r.designation.as_ref();
        let mut row = vec![
            r.subject.clone(),
            r.item.clone(),
            r.basis.kind.clone(),
            r.basis.number.clone(),
            r.basis.date.to_string(),
            r.basis.issuer.clone(),
            r.severity
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            r.decision_date.to_string(),
            date(rest.map(|x| x.on)),
            rest.map(|x| x.basis.clone()).unwrap_or_default(),
            date(des.map(|d| d.designated_on)),
            des.map(|d| d.removal_conditions.clone())
                .unwrap_or_default(),
            date(des.and_then(|d| d.removed_on)),
            des.and_then(|d| d.removal_basis.clone())
                .unwrap_or_default(),
        ];
        row.extend(
            names
                .iter()
                .map(|n| r.fields.get(*n).cloned().unwrap_or_default()),
        );
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}
