//! The binary COPY framing, fed in every split a server's messages could bring. The reads
//! themselves run against PostgreSQL in `tests/ledger_store.rs` (the tamper tests, with
//! `DATABASE_URL` set).

use super::*;

/// A binary COPY stream of `rows` (each a list of columns, `None` for NULL).
fn stream(rows: &[Vec<Option<&[u8]>>], extension: &[u8]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&(extension.len() as u32).to_be_bytes());
    out.extend_from_slice(extension);
    for row in rows {
        out.extend_from_slice(&(row.len() as i16).to_be_bytes());
        for column in row {
            match column {
                Some(bytes) => {
                    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                    out.extend_from_slice(bytes);
                }
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// Feeds `bytes` in pieces cut at `cuts` and collects the rows' columns.
fn read(
    bytes: &[u8],
    width: usize,
    cuts: &[usize],
) -> Result<Vec<[Option<Vec<u8>>; 3]>, LedgerError> {
    let mut rows = Rows::new(width);
    let mut out = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        rows.feed(&bytes[from..cut], &mut |row| {
            out.push(columns::<3>(row).map(|c| c.map(<[u8]>::to_vec)));
            Ok(())
        })?;
        from = cut;
    }
    rows.finish()?;
    Ok(out)
}

#[test]
fn rows_come_out_whole_however_the_stream_is_cut() {
    let seq = 7i64.to_be_bytes();
    let rows = vec![
        vec![Some(&seq[..]), Some(&b"caller"[..]), Some(&b""[..])],
        vec![Some(&seq[..]), None, Some(&[0xff, 0, 1][..])],
    ];
    let bytes = stream(&rows, b"ext");
    let want: Vec<[Option<Vec<u8>>; 3]> = rows
        .iter()
        .map(|r| [0, 1, 2].map(|i| r[i].map(<[u8]>::to_vec)))
        .collect();
    assert_eq!(read(&bytes, 3, &[]).unwrap(), want, "in one piece");
    for cut in 0..=bytes.len() {
        assert_eq!(read(&bytes, 3, &[cut]).unwrap(), want, "cut at {cut}");
    }
    let every_byte: Vec<usize> = (1..bytes.len()).collect();
    assert_eq!(read(&bytes, 3, &every_byte).unwrap(), want, "byte by byte");
    assert_eq!(int8(want[0][0].as_deref()), Some(7));
    assert_eq!(
        int8(Some(&b"1234567"[..])),
        None,
        "seven bytes are no BIGINT"
    );
}

#[test]
fn a_stream_that_is_cut_short_or_malformed_is_refused() {
    let seq = 1i64.to_be_bytes();
    let rows = vec![vec![Some(&seq[..]), Some(&b"a"[..]), Some(&b"b"[..])]];
    let bytes = stream(&rows, b"");
    // No trailer, or only part of a row: the stream did not end where COPY ends.
    for len in [bytes.len() - 2, bytes.len() - 3, 19, 5] {
        assert!(read(&bytes[..len], 3, &[]).is_err(), "cut to {len} bytes");
    }
    // Bytes after the trailer.
    let mut after = bytes.clone();
    after.push(0);
    assert!(read(&after, 3, &[]).is_err());
    // Another width than asked for, and a signature that is not COPY's.
    assert!(read(&bytes, 2, &[]).is_err());
    let mut unsigned = bytes.clone();
    unsigned[0] = b'X';
    assert!(read(&unsigned, 3, &[]).is_err());
    // A negative length other than NULL's.
    let mut negative = bytes;
    let at = 19 + 2 + 4 + 8;
    negative[at..at + 4].copy_from_slice(&(-2i32).to_be_bytes());
    assert!(read(&negative, 3, &[]).is_err());
}
