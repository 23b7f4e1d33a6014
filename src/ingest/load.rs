//! A whole file into the store, validating and writing at once: validation runs on a blocking
//! thread and hands each batch of good records to the writer as soon as it has them, so on two
//! cores parsing and validating one part overlaps the database writing the part before. The
//! file is still one transaction: it is staged whole, and commits only when every row was good
//! and the caller has recorded the change ([`Staged::commit`]).

use time::Date;
use tokio::sync::mpsc;

use super::{BySubject, Counts, IngestReport, RawRow, RowError, Summary, validate_into};
use crate::{
    catalog::Catalog,
    records::Record,
    store::{
        Store, StoreError,
        records::{Ingest, InsertOutcome},
    },
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

/// A file's records written in one transaction, not committed yet: what is about to change is
/// known ([`Staged::subjects`]), so it can be put on record first.
pub struct Staged {
    ingest: Ingest,
    subjects: Vec<(String, u64)>,
}

impl Staged {
    /// The subjects of the file's records, each with its number of distinct records, in the
    /// order the subjects first appear.
    pub fn subjects(&self) -> &[(String, u64)] {
        &self.subjects
    }

    /// Commits the file's records; dropped instead, it writes nothing.
    pub async fn commit(self) -> Result<InsertOutcome, StoreError> {
        self.ingest.commit().await
    }
}

/// Validates every row against `catalog` and writes the file's records to `store` in one
/// transaction, left open, calling `progress` every `every` rows. On any bad row nothing is
/// written and the report names every one of them.
#[allow(clippy::too_many_arguments)]
pub async fn validate_and_stage<I>(
    store: &Store,
    catalog: Catalog,
    own_department: String,
    today: Date,
    rows: I,
    now_ms: i64,
    every: u64,
    progress: impl FnMut(&Counts) + Send + 'static,
) -> Result<(Summary, Staged), LoadError>
where
    I: IntoIterator<Item = Result<RawRow, RowError>> + Send + 'static,
{
    let subject_types = catalog.subject_types();
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
        let mut ingest = store.begin_ingest(subject_types, now_ms).await?;
        let mut subjects = BySubject::default();
        while let Some(batch) = received.recv().await {
            ingest.write(&batch).await?;
            subjects.add(&batch);
        }
        Ok::<_, StoreError>(Staged {
            ingest,
            subjects: subjects.into_counts(),
        })
    }
    .await;
    // On a store error the channel closes here and validation runs to its end unhindered.
    drop(received);
    let validated = validation
        .await
        .map_err(|e| StoreError::Unavailable(format!("validation stopped: {e}")))?;
    // A bad file is reported as such even if the store failed too: fixing the file comes first.
    let summary = validated.map_err(LoadError::Refused)?;
    Ok((summary, written?))
}
