//! `credit-node gen-data`: realistic synthetic records (valid identifiers and check characters,
//! Chinese names and addresses, a spread over the catalog's items, some expired, some restored)
//! as JSON Lines that `ingest` accepts, for the demo, tests and benchmarks.

use std::{
    collections::BTreeMap,
    io::{BufWriter, Write},
    path::PathBuf,
};

use super::{
    CliError,
    progress::{self, Unit},
};
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
    let today = Clock::system().today();
    let today = match args.as_of {
        Some(day) if day > today => {
            return Err(CliError::Input(format!(
                "--as-of: {day} is after today ({today}): ingest refuses records decided \
                 after its today, so none of these could be loaded yet"
            )));
        }
        Some(day) => day,
        None => today,
    };
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    let write_err = |e: std::io::Error| match &args.out {
        Some(path) => CliError::Runtime(format!("writing {}: {e}", path.display())),
        None => super::output::write_error(e),
    };
    // Into a file only: on standard output the records are the output.
    let bar = args
        .out
        .as_ref()
        .and_then(|_| progress::bar("generating", args.subjects, Unit::Count("subjects")));
    let mut records = 0u64;
    let mut items = BTreeMap::<String, u64>::new();
    let mut generated =
        gen_data::generate_numbered(&catalog, &args.department, args.subjects, args.seed, today);
    let written = generated
        .try_for_each(|(n, record)| {
            if let Some(bar) = &bar {
                bar.set_position(n + 1);
            }
            records += 1;
            *items.entry(record.item.clone()).or_default() += 1;
            out.write_all(gen_data::to_json_line(&record).as_bytes())?;
            out.write_all(b"\n")
        })
        .and_then(|()| out.flush());
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    written.map_err(write_err)?;
    if let Some(path) = &args.out {
        let mix: Vec<String> = items
            .iter()
            .map(|(item, n)| format!("{n} {item}"))
            .collect();
        crate::outln!(
            "wrote {records} records of {} subjects to {} (department {}, seed {}, as of {today}): {}",
            args.subjects,
            path.display(),
            args.department,
            args.seed,
            mix.join(", "),
        )?;
    }
    Ok(())
}

fn parse_day(text: &str) -> Result<time::Date, String> {
    time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|e| format!("expected YYYY-MM-DD: {e}"))
}
