//! Turning one stored record into what leaves the node, under a [`Decision`].
//!
//! Promise 4 of design.md: a granted personal field leaves only in its decided form. A value
//! whose rule cannot be applied is withheld ([`Withheld::NotDesensitizable`]), never sent as is.

use std::collections::{BTreeMap, HashMap};

use super::{Decision, Outcome, Withheld};
use crate::desensitize::{Applied, Form, RecipientKey, Rule};
use crate::identity::SpiffeId;

/// Read access to a stored record's fields by name.
pub trait FieldSource {
    fn field(&self, name: &str) -> Option<&str>;
}

impl<K: AsRef<str>, V: AsRef<str>> FieldSource for [(K, V)] {
    fn field(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FieldSource for Vec<(K, V)> {
    fn field(&self, name: &str) -> Option<&str> {
        self.as_slice().field(name)
    }
}

impl FieldSource for BTreeMap<String, String> {
    fn field(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> FieldSource for HashMap<String, String, S> {
    fn field(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// One record as it may leave the node: granted fields (in decided form, in decision order;
/// a granted field missing from the record is absent) and withheld fields with their reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Disclosed<'d> {
    pub fields: Vec<(&'d str, String)>,
    pub withheld: Vec<(&'d str, Withheld)>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiscloseError {
    #[error("item {0:?} was not part of the decision")]
    NotDecided(String),
    #[error("the pseudonym key was derived for another recipient than the decision's caller")]
    WrongRecipient,
}

impl Decision<'_> {
    /// Applies the decision to one record of `item`. `key` must be the caller's
    /// ([`RecipientKey::derive`] with [`Decision::caller`]): pseudonyms are per recipient.
    pub fn disclose<'d>(
        &'d self,
        item: &str,
        record: &(impl FieldSource + ?Sized),
        key: &RecipientKey,
    ) -> Result<Disclosed<'d>, DiscloseError> {
        if !same_id(&self.caller, key.recipient()) {
            return Err(DiscloseError::WrongRecipient);
        }
        let decided = self
            .items
            .iter()
            .find(|i| i.item == item)
            .ok_or_else(|| DiscloseError::NotDecided(item.to_owned()))?;
        let mut out = Disclosed {
            fields: Vec::with_capacity(decided.fields.len()),
            withheld: Vec::new(),
        };
        for f in &decided.fields {
            let name: &'d str = &f.field;
            let form = match f.outcome {
                Outcome::Withheld(reason) => {
                    out.withheld.push((name, reason));
                    continue;
                }
                // Before looking at the value: whether the record holds one is part of what
                // `suppress` keeps back, so every record reports the field alike.
                Outcome::Granted(Form::Rule(Rule::Suppress)) => {
                    out.withheld.push((name, Withheld::Suppressed));
                    continue;
                }
                Outcome::Granted(form) => form,
            };
            let Some(value) = record.field(name) else {
                continue;
            };
            match form {
                Form::Raw => out.fields.push((name, value.to_owned())),
                Form::Rule(rule) => match rule.apply(value, key) {
                    Ok(Applied::Value(v)) => out.fields.push((name, v)),
                    Ok(Applied::Suppressed) => out.withheld.push((name, Withheld::Suppressed)),
                    Err(_) => out.withheld.push((name, Withheld::NotDesensitizable)),
                },
            }
        }
        Ok(out)
    }
}

/// `id.to_string() == text`, without allocating on the hot path.
fn same_id(id: &SpiffeId, text: &str) -> bool {
    let rest = text.strip_prefix("spiffe://");
    let rest = rest.and_then(|r| r.strip_prefix(id.trust_domain().as_str()));
    let rest = rest.and_then(|r| r.strip_prefix('/'));
    let rest = rest.and_then(|r| r.strip_prefix(id.kind().as_str()));
    let rest = rest.and_then(|r| r.strip_prefix('/'));
    rest == Some(id.id())
}
