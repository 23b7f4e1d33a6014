//! The `credit-node` command: serve a node, make a development PKI, call a node, or take the tour.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use credit_node::cli;

#[derive(Parser)]
#[command(
    name = "credit-node",
    version,
    about = "Share public credit information between departments lawfully, privately and verifiably."
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node from its TOML config file. SIGHUP reloads certificates, trust bundles and CRLs.
    Serve {
        /// The node's config file (TOML; see deploy/node.example.toml). A SQLite store it
        /// names is created, with its folder, on the first start.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write a development PKI: two regions' CAs, identities, negative fixtures, catalog key.
    DevPki {
        /// The folder to write it to (created if missing; layout in certs/README.md).
        #[arg(long)]
        out: PathBuf,
    },
    /// Catalogs: keygen, check, sign, verify, explain.
    #[command(subcommand)]
    Catalog(cli::catalog::Command),
    /// Load a CSV or JSON Lines file of credit records (one transaction; any bad row, nothing written).
    Ingest(cli::ingest::Args),
    /// Write realistic synthetic records as JSON Lines (for the demo, tests and benchmarks).
    GenData(cli::gen_data::Args),
    /// Ask a node who it thinks you are; prints the identity as JSON.
    Whoami(cli::whoami::Args),
    /// Check every [[interconnect.route]] of a node's config from its machine, with its own
    /// certificate: reachable, the right node, this node accepted (and, with --relay, taken as
    /// a relay). Exit 1 if one fails.
    Routes(cli::routes::Args),
    /// List the records a node has withdrawn (restored, removed from a list) since a time, as
    /// your department: stop using them. Each page is on record in the node's ledger.
    Withdrawals(cli::withdrawals::Args),
    /// Measure bulk-harvesting resistance: a real node, harvesters and a legitimate workload.
    HarvestSim(cli::harvest_sim::Args),
    /// The ledger: verify (stored or an export, offline), list, export with proofs; review and
    /// lift suspensions on a running node (officers).
    #[command(subcommand)]
    Ledger(cli::ledger::Command),
    /// The newcomer's tour: a PKI, two regional nodes on 127.0.0.1, and what they accept and refuse.
    Demo(cli::demo::Args),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Command::Serve { config } => cli::serve::run(&config).await,
            Command::DevPki { out } => cli::dev_pki(&out),
            Command::Catalog(command) => cli::catalog::run(command),
            Command::Ingest(args) => cli::ingest::run(args).await,
            Command::GenData(args) => cli::gen_data::run(args),
            Command::Whoami(args) => cli::whoami::run(args).await,
            Command::Routes(args) => cli::routes::run(args).await,
            Command::Withdrawals(args) => cli::withdrawals::run(args).await,
            Command::HarvestSim(args) => cli::harvest_sim::run(args).await,
            Command::Demo(args) => cli::demo::run(args).await,
            Command::Ledger(command) => cli::ledger::run(command).await,
        }
    });
    match result {
        // The reader of standard output has gone (`… | head -1`): nothing more to say.
        Ok(()) | Err(cli::CliError::OutputClosed) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Args;

    /// `--help` describes every argument of every command, positional ones too.
    #[test]
    fn every_argument_has_a_description() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut command = Args::command();
        command.build();
        let mut missing = Vec::new();
        walk(&command, "credit-node", &mut missing);
        assert!(missing.is_empty(), "no description: {missing:#?}");
    }
}
