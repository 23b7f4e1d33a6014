//! `credit-node gen-data`: realistic synthetic records (valid identifiers and check characters,
//! Chinese names and addresses, a spread over the catalog's items, some expired, some restored)
//! as JSON Lines that `ingest` accepts, for the demo, tests and benchmarks.

use std::{
    io::{BufWriter, Write},
    path::PathBuf,
};

use super::CliError;
use crate::{catalog::Catalog, clock::Clock, gen_data};

#[derive(clap::Args)]
pub struct Args {
    /// Number of distinct subjects.
    #[arg(long)]
    pub subjects: u64,
    /// Seed: the same seed and `--as-of` day give the same records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The day the records are made for (YYYY-MM-DD; default: today in Beijing time, UTC+8, the day the law counts in): decisions lie
    /// before it, and some disclosure periods have ended by it. Fix it to get the same file
    /// on another day.
    #[arg(long, value_parser = parse_day)]
    pub as_of: Option<time::Date>,
    /// The recording department: records are made for the items it is the source of.
    #[arg(long, default_value = "samr")]
    pub department: String,
    /// Catalog to generate for (default: the demo catalog).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let catalog = match &args.catalog {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
            Catalog::parse(&path.display().to_string(), &bytes)
                .map_err(|e| CliError::Input(e.to_string()))?
        }
        None => Catalog::parse("demo.toml", crate::catalog::DEMO.as_bytes())
            .map_err(|e| CliError::Runtime(e.to_string()))?,
    };
    if !catalog
        .items
        .iter()
        .any(|i| i.source_department == args.department)
    {
        return Err(CliError::Input(format!(
            "--department: the catalog has no item whose source is {:?}",
            args.department
        )));
    }
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    let today = args.as_of.unwrap_or_else(|| Clock::system().today());
    let write_err = |e: std::io::Error| match &args.out {
        Some(path) => CliError::Runtime(format!("writing {}: {e}", path.display())),
        None => super::output::write_error(e),
    };
    for record in gen_data::generate(&catalog, &args.department, args.subjects, args.seed, today) {
        out.write_all(gen_data::to_json_line(&record).as_bytes())
            .map_err(write_err)?;
        out.write_all(b"\n").map_err(write_err)?;
    }
    out.flush().map_err(write_err)
}

fn parse_day(text: &str) -> Result<time::Date, String> {
    time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|e| format!("expected YYYY-MM-DD: {e}"))
}
