//! Per-recipient pseudonym keys.
//!
//! A recipient's key is HMAC-SHA256(master key, label || recipient SPIFFE ID): the same recipient
//! always gets the same pseudonym for a value (it can join its own records), two recipients get
//! unrelated ones (they cannot join theirs with each other's), and nobody without the master key
//! can reverse a pseudonym by enumerating the small space of identifiers.

use ring::hmac;

use crate::identity::SpiffeId;

/// Domain separation: the master key may later derive other per-recipient keys.
const LABEL: &[u8] = b"credit-node pseudonym key v1\0";

/// The pseudonym key of one recipient; derive it once per request.
pub struct RecipientKey {
    key: hmac::Key,
    recipient: String,
}

impl RecipientKey {
    pub fn derive(master_key: &[u8; 32], recipient: &SpiffeId) -> Self {
        let recipient = recipient.to_string();
        let master = hmac::Key::new(hmac::HMAC_SHA256, master_key);
        let mut ctx = hmac::Context::with_key(&master);
        ctx.update(LABEL);
        ctx.update(recipient.as_bytes());
        let derived = ctx.sign();
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            recipient,
        }
    }

    /// The SPIFFE ID this key was derived for, as text.
    pub fn recipient(&self) -> &str {
        &self.recipient
    }

    /// Writes `p_` and the first 16 bytes of the MAC as lower-case hex (128 bits: collisions are
    /// negligible at any catalog's scale).
    pub(super) fn pseudonym_into(&self, value: &str, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let tag = hmac::sign(&self.key, value.as_bytes());
        out.reserve(34);
        out.push_str("p_");
        for &b in &tag.as_ref()[..16] {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

impl std::fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecipientKey")
            .field("recipient", &self.recipient)
            .finish_non_exhaustive()
    }
}

/// The node's master secret for pseudonyms. Never printed: `Debug` shows nothing of it.
#[derive(Clone)]
pub struct PseudonymKey([u8; 32]);

impl PseudonymKey {
    /// 32 bytes from the system's secure random number generator.
    pub fn generate() -> Result<Self, ring::error::Unspecified> {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)?;
        Ok(Self(bytes))
    }

    /// Parses 64 hexadecimal digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        crate::ledger::hex::decode_array::<32>(text).map(Self)
    }

    /// The key as 64 hex digits (for its file), wiped from memory when dropped.
    pub fn to_hex(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(crate::tls::hex(&self.0))
    }

    /// The node's [`RecordIds`](crate::records::RecordIds), derived from this secret (a label
    /// of its own keeps it independent of every recipient's key): one secret to guard and
    /// share between replicas, not two.
    pub fn record_ids(&self) -> crate::records::RecordIds {
        let master = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let tag = hmac::sign(&master, b"credit-node record id v1");
        let mut secret = [0u8; 16];
        secret.copy_from_slice(&tag.as_ref()[..16]);
        let ids = crate::records::RecordIds::new(secret);
        zeroize::Zeroize::zeroize(&mut secret);
        ids
    }

    /// The key of one recipient; derive it once per request.
    pub fn recipient_key(&self, recipient: &SpiffeId) -> RecipientKey {
        RecipientKey::derive(&self.0, recipient)
    }
}

/// The master secret does not outlive its last holder in memory (a core dump or a later
/// allocation reusing the bytes would otherwise hold it).
impl Drop for PseudonymKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}
