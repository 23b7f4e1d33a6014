//! A cursor over untrusted entry bytes, shared by the decoder and the
//! allocation-free validator so both read the grammar the same way.

use super::DecodeError;

/// A cursor over untrusted bytes: every read checks the remaining length
/// first, so no input can make it index out of bounds.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.0.len() {
            return Err(DecodeError::Truncated { field });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    pub(super) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let head = self.take(N, field)?;
        head.try_into()
            .map_err(|_| DecodeError::Truncated { field })
    }
    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }
    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    pub(super) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    pub(super) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }
    pub(super) fn str_ref(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let n = self.u32(field)? as usize;
        let raw = self.take(n, field)?;
        std::str::from_utf8(raw).map_err(|_| DecodeError::NotUtf8 { field })
    }
    pub(super) fn str(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.str_ref(field).map(str::to_owned)
    }
    /// A counted list. The count is untrusted: capacity is bounded by what
    /// the remaining bytes could hold (every element takes at least 4), so
    /// a forged count cannot make us allocate gigabytes.
    pub(super) fn list<T>(
        &mut self,
        field: &'static str,
        mut item: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.u32(field)? as usize;
        let mut out = Vec::with_capacity(count.min(self.0.len() / 4));
        for _ in 0..count {
            out.push(item(self)?);
        }
        Ok(out)
    }
}
