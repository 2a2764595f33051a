//! The `zarrstac` command: a thin layer over the zarrstac crates.

mod batch;
mod commands;
mod progress;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Parsing chunk indexes allocates many small vectors; mimalloc serves them far faster
// than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "zarrstac",
    version,
    about = "Virtual Zarr references and STAC items for scientific array data"
)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace or a tracing directive).
    #[arg(long, global = true, env = "ZARRSTAC_LOG", default_value = "warn")]
    log: String,
    /// Log lines as text or as JSON objects (for log collectors).
    #[arg(long, global = true, env = "ZARRSTAC_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume ingestion requests and object-store events from Kafka (a consumer group).
    Worker(commands::worker::WorkerArgs),
    /// List a prefix of an object store and enqueue (or, with --inline, ingest) every object.
    Backfill(commands::backfill::BackfillArgs),
    /// Ingest sources: references, validated STAC items and a static catalog (the embedded pipeline).
    Ingest(commands::ingest::IngestArgs),
    /// Write kerchunk JSON references for NetCDF-3, NetCDF-4 or HDF5 files.
    Refs(commands::refs::RefsArgs),
    /// Combine the references of the files of a dataset (e.g. a CMIP time series) along time.
    Combine(commands::combine::CombineArgs),
    /// Print the STAC item of a NetCDF/HDF5 file or a Zarr store (EOPF product).
    Item(commands::item::ItemArgs),
    /// Upsert existing STAC items (files, ndjson, a static catalog) into a catalog.
    Publish(commands::publish::PublishArgs),
    /// Run failed sources again: the dead-letter file of the embedded pipeline.
    Replay(commands::replay::ReplayArgs),
    /// Serve the asset-list and asset-search API over the asset documents in pgstac.
    Serve(commands::serve::ServeArgs),
    /// Validate STAC items, collections and catalogs offline against the vendored schemas.
    Validate(commands::validate::ValidateArgs),
}

/// Turns transparent huge pages off for this process. mimalloc asks for them on
/// kernels set to `madvise`; the kernel then zeroes 2 MiB on the first touch of each,
/// which for a short run that reads a dataset's state of a few MiB cost more than all
/// its own work (0.19 s against 0.09 s for one arrival into a 10,000-file dataset).
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes no memory
    // of this process; a failure (an old kernel) just leaves the default.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    without_huge_pages();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    if cli.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .without_time()
            .init();
    }
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
    let code = runtime.block_on(async {
        match cli.command {
            Command::Ingest(args) => commands::ingest::run(args).await,
            Command::Worker(args) => commands::worker::run(args).await,
            Command::Backfill(args) => commands::backfill::run(args).await,
            Command::Refs(args) => commands::refs::run(args).await,
            Command::Combine(args) => commands::combine::run(args).await,
            Command::Item(args) => commands::item::run(args).await,
            Command::Validate(args) => commands::validate::run(args),
            Command::Publish(args) => commands::publish::run(args).await,
            Command::Replay(args) => commands::replay::run(args).await,
            Command::Serve(args) => commands::serve::run(args).await,
        }
    });
    drop(runtime);
    exit_now(code)
}

/// Ends the process once everything of ours is dropped and written, without the
/// allocator's exit-time collection: mimalloc hands every page back to the kernel one
/// `madvise` at a time just before the kernel frees them all (10 ms and more after a run
/// that held a large dataset's state).
fn exit_now(code: ExitCode) -> ExitCode {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    #[cfg(target_os = "linux")]
    // SAFETY: every value of this program has been dropped (the runtime, its tasks and
    // their files) and the standard streams are flushed; `_exit` only skips the C
    // library's exit handlers, of which the allocator's collection is the one here.
    unsafe {
        libc::_exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
    }
    #[allow(unreachable_code)]
    code
}
