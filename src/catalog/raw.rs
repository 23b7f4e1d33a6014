//! The catalog file as serde reads it. Every key is known (`deny_unknown_fields`), and values
//! that semantic checks may refuse keep their span so the error can name its line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{FieldType, SubjectType};
use crate::desensitize::Form;

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCatalog {
    #[allow(dead_code)] // checked before serde runs, see parse::check_format
    pub format: u32,
    pub authority: String,
    pub version: String,
    pub date: S<toml::value::Datetime>,
    pub purposes: Vec<RawPurpose>,
    pub items: Vec<RawItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPurpose {
    pub id: S<String>,
    pub description: String,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawSharing {
    Unconditional,
    Conditional,
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawItem {
    pub id: S<String>,
    pub name: S<String>,
    pub category: S<String>,
    pub legal_basis: S<String>,
    pub source: S<String>,
    pub subject: SubjectType,
    pub restorable: bool,
    #[serde(default)]
    pub disclosure: Option<RawDisclosure>,
    pub sharing: S<RawSharing>,
    pub fields: S<Vec<RawField>>,
    #[serde(default)]
    pub grants: Vec<S<RawGrant>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDisclosure {
    pub minor: Option<S<u32>>,
    pub ordinary: Option<S<u32>>,
    pub serious: Option<S<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawField {
    pub name: S<String>,
    #[serde(rename = "type")]
    pub ty: S<FieldType>,
    #[serde(default)]
    pub personal: bool,
    #[serde(default)]
    pub values: Vec<String>,
    pub form: Option<S<Form>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrant {
    pub trust_domains: S<Vec<S<String>>>,
    pub departments: S<Vec<S<String>>>,
    pub purposes: S<Vec<S<String>>>,
    pub fields: S<Vec<S<String>>>,
    #[serde(default)]
    pub forms: BTreeMap<String, S<Form>>,
}
