//! `credit-node catalog ...`: what a catalog authority and an operator do with catalogs:
//! make a key, check, sign and verify a catalog, and explain what a caller would get.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::CliError;
use crate::{
    catalog::{self, Catalog, CatalogError, SignedCatalog, keyfiles},
    config::LoadedConfig,
    identity::SpiffeId,
};

#[derive(Subcommand)]
pub enum Command {
    /// Generate a catalog-authority Ed25519 key pair (private key written with mode 0600).
    Keygen {
        /// Where to write the private key (PKCS#8 PEM, mode 0600): keep it offline.
        #[arg(long)]
        private: PathBuf,
        /// Where to write the public key (SPKI PEM): what nodes name as
        /// catalog.authority_key.
        #[arg(long)]
        public: PathBuf,
    },
    /// Parse and validate a catalog without any signature: lint it before signing.
    Check {
        /// The catalog (TOML).
        file: PathBuf,
    },
    /// Sign a catalog: writes a detached signature (default FILE.sig).
    Sign {
        /// The authority's private key (PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        /// The catalog to sign (TOML); refused unless it validates.
        file: PathBuf,
        /// Where to write the detached signature (default FILE.sig).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a catalog's signature and contents, as a node does before loading it.
    Verify {
        /// The authority's public key (SPKI PEM).
        #[arg(long)]
        key: PathBuf,
        /// The catalog to verify (TOML).
        file: PathBuf,
        /// The detached signature (default FILE.sig).
        #[arg(long)]
        signature: Option<PathBuf>,
    },
    /// Show exactly which items and fields a caller gets for a purpose, and in which form.
    Explain {
        /// Take catalog, signature and key from a node's config file ...
        #[arg(long, conflicts_with_all = ["catalog", "key"])]
        config: Option<PathBuf>,
        /// ... or name them: the catalog file,
        #[arg(long, requires = "key")]
        catalog: Option<PathBuf>,
        /// the authority's public key,
        #[arg(long)]
        key: Option<PathBuf>,
        /// and the signature (default CATALOG.sig).
        #[arg(long)]
        signature: Option<PathBuf>,
        /// The caller's SPIFFE ID, e.g. spiffe://region-a.credit.test/dept/tax
        #[arg(long)]
        caller: String,
        /// The purpose the caller states: one of the catalog's purpose ids.
        #[arg(long)]
        purpose: String,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn default_sig(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

fn input(e: impl std::fmt::Display) -> CliError {
    CliError::Input(e.to_string())
}

pub fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Keygen { private, public } => {
            keyfiles::generate_key_files(&private, &public).map_err(input)?;
            crate::outln!(
                "wrote {} (private, mode 0600) and {}",
                private.display(),
                public.display()
            )?;
        }
        Command::Check { file } => {
            let bytes =
                std::fs::read(&file).map_err(|e| input(format!("{}: {e}", file.display())))?;
            let parsed = Catalog::parse(&file.display().to_string(), &bytes).map_err(input)?;
            crate::outln!(
                "{}: valid catalog {}, {} items (unsigned)",
                file.display(),
                parsed.version,
                parsed.items.len()
            )?;
        }
        Command::Sign { key, file, out } => {
            let out = out.unwrap_or_else(|| default_sig(&file));
            // Sign only what a node would load: a catalog that does not parse is refused here.
            let bytes =
                std::fs::read(&file).map_err(|e| input(format!("{}: {e}", file.display())))?;
            Catalog::parse(&file.display().to_string(), &bytes).map_err(input)?;
            keyfiles::sign_file(&file, &key, &out).map_err(input)?;
            crate::outln!("wrote {}", out.display())?;
        }
        Command::Verify {
            key,
            file,
            signature,
        } => {
            let signature = signature.unwrap_or_else(|| default_sig(&file));
            // A signature that does not verify is what the command checks for, and exits 1 like a
            // `ledger verify` that finds tampering; files it cannot read or parse are bad input.
            let signed = SignedCatalog::load(&file, &signature, &key).map_err(|e| match e {
                CatalogError::Signature { .. } => CliError::Runtime(e.to_string()),
                e => input(e),
            })?;
            crate::outln!(
                "{}: signature valid (authority key {}); catalog {}, {} items, sha256 {}",
                file.display(),
                signed.signer(),
                signed.catalog().version,
                signed.catalog().items.len(),
                signed.digest_hex()
            )?;
        }
        Command::Explain {
            config,
            catalog,
            key,
            signature,
            caller,
            purpose,
            json,
        } => {
            let signed = match (config, catalog, key) {
                (Some(config), _, _) => LoadedConfig::load(&config)?.catalog()?,
                (None, Some(catalog), Some(key)) => {
                    let signature = signature.unwrap_or_else(|| default_sig(&catalog));
                    SignedCatalog::load(&catalog, &signature, &key).map_err(input)?
                }
                _ => return Err(input("give --config, or --catalog with --key")),
            };
            let caller = SpiffeId::parse(&caller).map_err(|e| input(format!("--caller: {e}")))?;
            if !signed.catalog().has_purpose(&purpose) {
                let known: Vec<&str> = signed
                    .catalog()
                    .purposes
                    .iter()
                    .map(|p| p.id.as_str())
                    .collect();
                return Err(input(format!(
                    "--purpose: unknown purpose {purpose:?}; the catalog declares: {}",
                    known.join(", ")
                )));
            }
            let explanation = catalog::explain(&signed, &caller, &purpose);
            if json {
                crate::outln!("{}", explanation.to_json())?;
            } else {
                crate::out!("{explanation}")?;
            }
        }
    }
    Ok(())
}
