//! From catalog bytes to a validated [`Catalog`]: syntax and unknown keys through serde, then
//! every semantic rule, each refusal located by [`Ctx::error`].

use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::location::{Ctx, ParseError, line_col};
use super::raw::{RawCatalog, RawDisclosure, RawField, RawGrant, RawItem, RawSharing};
use super::{
    Catalog, DisclosurePeriods, Field, FieldType, Grant, Item, Purpose, Severity, Sharing,
};
use crate::desensitize::{Form, Generalise, Rule};
use crate::identity::TrustDomain;

/// The only `format` this code reads.
pub const FORMAT: i64 = 1;

pub(super) fn parse(name: &str, bytes: &[u8]) -> Result<Catalog, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_col(&String::from_utf8_lossy(bytes), e.valid_up_to());
        ParseError {
            file: name.to_owned(),
            line,
            column,
            key_path: String::new(),
            message: "catalog is not valid UTF-8".into(),
        }
    })?;
    let bare = Ctx {
        name,
        text,
        doc: None,
    };
    let doc = DeTable::parse(text).map_err(|e| bare.error(e.span(), e.message()))?;
    let ctx = Ctx {
        name,
        text,
        doc: Some(&doc),
    };
    check_format(&ctx, &doc)?;
    let raw: RawCatalog = toml::from_str(text).map_err(|e| ctx.error(e.span(), e.message()))?;
    Validator { ctx: &ctx }.catalog(raw)
}

/// `format` is checked before anything else, so a newer catalog is refused for its version and
/// not for the first key this code does not know.
fn check_format(ctx: &Ctx<'_>, doc: &Spanned<DeTable<'_>>) -> Result<(), ParseError> {
    let found = doc.get_ref().iter().find(|(k, _)| k.get_ref() == "format");
    match found {
        None => Err(ctx.error(
            Some(0..0),
            format!("missing key `format` (expected format = {FORMAT})"),
        )),
        Some((_, v)) => match v.get_ref() {
            DeValue::Integer(i) if i.as_str() == FORMAT.to_string() && i.radix() == 10 => Ok(()),
            _ => Err(ctx.error(
                Some(v.span()),
                format!("unsupported catalog format (this node reads format = {FORMAT})"),
            )),
        },
    }
}

struct Validator<'a> {
    ctx: &'a Ctx<'a>,
}

type R<T> = Result<T, ParseError>;

fn is_id(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

fn is_field_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && s.as_bytes()[0].is_ascii_lowercase()
}

/// A department code is the last segment of a SPIFFE ID, so it follows the same alphabet.
fn is_department(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
        && s.as_bytes()[0].is_ascii_lowercase()
}

/// Which field types a generalising form can be applied to, so that a catalog cannot name a
/// form that would fail on every value.
fn form_fits(form: Form, ty: FieldType) -> Result<(), &'static str> {
    let needs = match form {
        Form::Rule(Rule::Generalise(Generalise::Year | Generalise::Month)) => {
            (ty == FieldType::Date, "a date field")
        }
        Form::Rule(Rule::Generalise(Generalise::Amount { .. })) => (
            matches!(ty, FieldType::Amount | FieldType::Integer),
            "an amount or integer field",
        ),
        Form::Rule(Rule::Generalise(Generalise::Province | Generalise::City)) => {
            (ty == FieldType::DivisionCode, "a division_code field")
        }
        _ => (true, ""),
    };
    if needs.0 { Ok(()) } else { Err(needs.1) }
}

impl Validator<'_> {
    fn err<T>(&self, span: std::ops::Range<usize>, msg: impl Into<String>) -> R<T> {
        Err(self.ctx.error(Some(span), msg))
    }

    fn catalog(&self, raw: RawCatalog) -> R<Catalog> {
        let date = match raw.date.get_ref() {
            toml::value::Datetime {
                date: Some(d),
                time: None,
                offset: None,
            } => time::Month::try_from(d.month)
                .ok()
                .and_then(|m| time::Date::from_calendar_date(i32::from(d.year), m, d.day).ok()),
            _ => None,
        };
        let Some(date) = date else {
            return self.err(raw.date.span(), "expected a date such as 2026-04-01");
        };
        let mut purposes: Vec<Purpose> = Vec::new();
        for p in raw.purposes {
            if !is_id(p.id.get_ref(), 64) {
                return self.err(
                    p.id.span(),
                    format!(
                        "malformed purpose id {:?} (lower-case letters, digits, '-')",
                        p.id.get_ref()
                    ),
                );
            }
            if purposes.iter().any(|q| q.id == *p.id.get_ref()) {
                return self.err(
                    p.id.span(),
                    format!("duplicate purpose id {:?}", p.id.get_ref()),
                );
            }
            purposes.push(Purpose {
                id: p.id.into_inner(),
                description: p.description,
            });
        }
        let mut items: Vec<Item> = Vec::new();
        for raw_item in raw.items {
            if items.iter().any(|i| i.id == *raw_item.id.get_ref()) {
                let id = &raw_item.id;
                return self.err(id.span(), format!("duplicate item id {:?}", id.get_ref()));
            }
            let item = self.item(raw_item, &purposes)?;
            items.push(item);
        }
        Ok(Catalog {
            authority: raw.authority,
            version: raw.version,
            date,
            purposes,
            items,
        })
    }

    fn item(&self, raw: RawItem, purposes: &[Purpose]) -> R<Item> {
        let id = raw.id.get_ref();
        if !is_id(id, 64) {
            return self.err(
                raw.id.span(),
                format!("malformed item id {id:?} (lower-case letters, digits, '-')"),
            );
        }
        for text in [&raw.name, &raw.category, &raw.legal_basis] {
            if text.get_ref().trim().is_empty() {
                return self.err(text.span(), format!("empty text in item {id:?}"));
            }
        }
        if !is_department(raw.source.get_ref()) {
            return self.err(
                raw.source.span(),
                format!("malformed department code {:?}", raw.source.get_ref()),
            );
        }
        let fields = self.fields(&raw)?;
        let disclosure = match &raw.disclosure {
            Some(d) => self.disclosure(d)?,
            None => DisclosurePeriods::default(),
        };
        let sharing = match (*raw.sharing.get_ref(), raw.grants.is_empty()) {
            (RawSharing::Conditional, true) => {
                return self.err(
                    raw.sharing.span(),
                    format!("item {id:?} is conditional but has no grants"),
                );
            }
            (RawSharing::Unconditional | RawSharing::None, false) => {
                return self.err(
                    raw.grants[0].span(),
                    format!("item {id:?}: grants are only allowed on conditional items"),
                );
            }
            (RawSharing::Unconditional, true) => Sharing::Unconditional,
            (RawSharing::None, true) => Sharing::None,
            (RawSharing::Conditional, false) => {
                let mut grants = Vec::new();
                for g in &raw.grants {
                    grants.push(self.grant(id, g.get_ref(), &fields, purposes)?);
                }
                self.no_conflicts(id, &raw.grants, &grants)?;
                Sharing::Conditional(grants)
            }
        };
        Ok(Item {
            id: raw.id.get_ref().clone(),
            name: raw.name.into_inner(),
            category: raw.category.into_inner(),
            legal_basis: raw.legal_basis.into_inner(),
            source_department: raw.source.into_inner(),
            subject: raw.subject,
            fields,
            disclosure,
            restorable: raw.restorable,
            sharing,
        })
    }

    fn fields(&self, raw: &RawItem) -> R<Vec<Field>> {
        let item = raw.id.get_ref();
        if raw.fields.get_ref().is_empty() {
            return self.err(raw.fields.span(), format!("item {item:?} has no fields"));
        }
        let mut out: Vec<Field> = Vec::new();
        for f in raw.fields.get_ref() {
            out.push(self.field(item, f, &out)?);
        }
        Ok(out)
    }

    fn field(&self, item: &str, f: &RawField, seen: &[Field]) -> R<Field> {
        let name = f.name.get_ref();
        if !is_field_name(name) {
            return self.err(
                f.name.span(),
                format!("malformed field name {name:?} (lower-case letters, digits, '_')"),
            );
        }
        if seen.iter().any(|s| s.name == *name) {
            return self.err(
                f.name.span(),
                format!("duplicate field {name:?} in item {item:?}"),
            );
        }
        let ty = *f.ty.get_ref();
        if (ty == FieldType::Enum) == f.values.is_empty() {
            return self.err(
                f.ty.span(),
                format!("field {name:?}: `values` is required for type enum and only for it"),
            );
        }
        let form = match (&f.form, f.personal) {
            (None, true) => {
                return self.err(
                    f.name.span(),
                    format!("personal field {name:?} in item {item:?} has no default `form`"),
                );
            }
            (Some(form), true) if *form.get_ref() == Form::Raw => {
                return self.err(
                    form.span(),
                    format!("personal field {name:?}: the default form cannot be raw; grant raw explicitly where the law allows it"),
                );
            }
            (Some(form), _) => {
                form_fits(*form.get_ref(), ty).or_else(|needs| {
                    self.err(
                        form.span(),
                        format!(
                            "form {} needs {needs}; field {name:?} is not",
                            form.get_ref()
                        ),
                    )
                })?;
                *form.get_ref()
            }
            (None, false) => Form::Raw,
        };
        Ok(Field {
            name: name.clone(),
            ty,
            personal: f.personal,
            values: f.values.clone(),
            form,
        })
    }

    fn disclosure(&self, d: &RawDisclosure) -> R<DisclosurePeriods> {
        let mut out = DisclosurePeriods::default();
        for (class, raw, slot) in [
            (Severity::Minor, &d.minor, &mut out.minor),
            (Severity::Ordinary, &d.ordinary, &mut out.ordinary),
            (Severity::Serious, &d.serious, &mut out.serious),
        ] {
            if let Some(months) = raw {
                let range = class.legal_months();
                if !range.contains(months.get_ref()) {
                    return self.err(
                        months.span(),
                        format!(
                            "{} disclosure period must be {} to {} months",
                            class.as_str(),
                            range.start(),
                            range.end()
                        ),
                    );
                }
                *slot = u8::try_from(*months.get_ref()).ok();
            }
        }
        Ok(out)
    }

    fn grant(&self, item: &str, g: &RawGrant, fields: &[Field], purposes: &[Purpose]) -> R<Grant> {
        for list in [&g.trust_domains, &g.departments, &g.purposes, &g.fields] {
            if list.get_ref().is_empty() {
                return self.err(
                    list.span(),
                    format!("empty list in a grant of item {item:?}"),
                );
            }
        }
        let mut trust_domains = Vec::new();
        for td in g.trust_domains.get_ref() {
            match TrustDomain::parse(td.get_ref()) {
                Ok(t) => trust_domains.push(t),
                Err(e) => return self.err(td.span(), e.to_string()),
            }
        }
        for d in g.departments.get_ref() {
            if !is_department(d.get_ref()) {
                return self.err(
                    d.span(),
                    format!("malformed department code {:?}", d.get_ref()),
                );
            }
        }
        for p in g.purposes.get_ref() {
            if !purposes.iter().any(|q| q.id == *p.get_ref()) {
                return self.err(
                    p.span(),
                    format!("unknown purpose {:?} in item {item:?}", p.get_ref()),
                );
            }
        }
        let mut granted: Vec<(String, Form)> = Vec::new();
        for f in g.fields.get_ref() {
            let name = f.get_ref();
            let Some(field) = fields.iter().find(|x| x.name == *name) else {
                return self.err(f.span(), format!("unknown field {name:?} in item {item:?}"));
            };
            if granted.iter().any(|(n, _)| n == name) {
                return self.err(f.span(), format!("field {name:?} listed twice"));
            }
            let form = match g.forms.get(name) {
                Some(form) => {
                    form_fits(*form.get_ref(), field.ty).or_else(|needs| {
                        self.err(
                            form.span(),
                            format!(
                                "form {} needs {needs}; field {name:?} is not",
                                form.get_ref()
                            ),
                        )
                    })?;
                    *form.get_ref()
                }
                None => field.form,
            };
            granted.push((name.clone(), form));
        }
        for (name, form) in &g.forms {
            if !granted.iter().any(|(n, _)| n == name) {
                return self.err(
                    form.span(),
                    format!("forms names field {name:?}, which this grant of item {item:?} does not list in `fields`"),
                );
            }
        }
        Ok(Grant {
            trust_domains,
            departments: g
                .departments
                .get_ref()
                .iter()
                .map(|d| d.get_ref().clone())
                .collect(),
            purposes: g
                .purposes
                .get_ref()
                .iter()
                .map(|p| p.get_ref().clone())
                .collect(),
            fields: granted,
        })
    }

    /// Two grants that both reach one (domain, department, purpose) must agree on the form of
    /// every field they share; otherwise which form applies would depend on grant order.
    fn no_conflicts(&self, item: &str, raw: &[Spanned<RawGrant>], grants: &[Grant]) -> R<()> {
        let mut seen: BTreeMap<(&str, &str, &str, &str), Form> = BTreeMap::new();
        for (g, span) in grants.iter().zip(raw.iter().map(Spanned::span)) {
            let mut local = BTreeSet::new();
            for td in &g.trust_domains {
                for d in &g.departments {
                    for p in &g.purposes {
                        for (f, form) in &g.fields {
                            let key = (td.as_str(), d.as_str(), p.as_str(), f.as_str());
                            if !local.insert(key) {
                                continue;
                            }
                            match seen.insert(key, *form) {
                                Some(other) if other != *form => {
                                    return self.err(
                                        span,
                                        format!(
                                            "item {item:?}: field {f:?} is granted to {td}/dept/{d} for {p:?} both as {other} and as {form}"
                                        ),
                                    );
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
