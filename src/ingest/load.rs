//! A whole file into the store, validating and writing at once: validation runs on a blocking
//! thread and hands each batch of good records to the writer as soon as it has them, so on two
//! cores parsing and validating one part overlaps the database writing the part before. The
//! file is still one transaction: it commits only when every row was good.

use time::Date;
use tokio::sync::mpsc;

use super::{Counts, IngestReport, RawRow, RowError, Summary, validate_into};
use crate::{
    catalog::Catalog,
    records::Record,
    store::{Store, StoreError, records::InsertOutcome},
};

/// Records handed to the writer at a time: enough for the writer to sort and insert in
/// multi-row statements, few enough that validation and writing overlap from the start.
const BATCH: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file has bad rows; nothing was written.
    #[error("{0}")]
    Refused(IngestReport),
    /// The store failed; nothing was written.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Validates every row against `catalog` and writes the file's records to `store` in one
/// transaction, calling `progress` every `every` rows. On any bad row nothing is written and
/// the report names every one of them.
#[allow(clippy::too_many_arguments)]
pub async fn validate_and_write<I>(
    store: &Store,
    catalog: Catalog,
    own_department: String,
    today: Date,
    rows: I,
    now_ms: i64,
    every: u64,
    progress: impl FnMut(&Counts) + Send + 'static,
) -> Result<(Summary, InsertOutcome), LoadError>
where
    I: IntoIterator<Item = Result<RawRow, RowError>> + Send + 'static,
{
    let (batches, mut received) = mpsc::channel::<Vec<Record>>(2);
    let validation = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(BATCH);
        let result = validate_into(
            &catalog,
            &own_department,
            today,
            rows,
            every,
            progress,
            |record| {
                batch.push(record);
                if batch.len() == BATCH {
                    // The writer stops taking batches only when it failed: then the rest is
                    // still validated (for the report), and not sent.
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    let _ = batches.blocking_send(full);
                }
            },
        );
        if result.is_ok() && !batch.is_empty() {
            let _ = batches.blocking_send(batch);
        }
        result
    });

    let written = async {
        let mut ingest = store.begin_ingest(now_ms).await?;
        while let Some(batch) = received.recv().await {
            ingest.write(&batch).await?;
        }
        Ok::<_, StoreError>(ingest)
    }
    .await;
    // On a store error the channel closes here and validation runs to its end unhindered.
    drop(received);
    let validated = validation
        .await
        .map_err(|e| StoreError::Unavailable(format!("validation stopped: {e}")))?;
    // A bad file is reported as such even if the store failed too: fixing the file comes first.
    let summary = validated.map_err(LoadError::Refused)?;
    let outcome = written?.commit().await?;
    Ok((summary, outcome))
}
