use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::PipelineConfig;
use crate::failed::FailedLog;
use crate::pipeline::Pipeline;

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Files, directories (searched for NetCDF/HDF5 files and Zarr stores) or URLs.
    #[arg(required = true)]
    sources: Vec<String>,
    /// Pipeline configuration (default: ./pipeline.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Catalog: a path or object-store URL (static catalog), an http(s) STAC API URL or a
    /// postgresql:// pgstac database.
    #[arg(long)]
    catalog: Option<String>,
    /// Where references are written (path or URL).
    #[arg(long)]
    refs_root: Option<String>,
    /// One collection id for every item.
    #[arg(long)]
    collection: Option<String>,
    /// Sources processed at once.
    #[arg(long)]
    concurrency: Option<usize>,
}

const FILE_EXTENSIONS: &[&str] = &["nc", "nc4", "h5", "hdf5", "he5", "hdf", "cdf"];

fn is_zarr_dir(p: &Path) -> bool {
    p.join(".zmetadata").exists() || p.join(".zgroup").exists() || p.join("zarr.json").exists()
}

/// Sources from the arguments: local directories are searched (sorted, so runs are
/// repeatable) for files with NetCDF/HDF5 extensions and for Zarr stores.
fn expand(args: &[String]) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                if is_zarr_dir(&p) {
                    out.push(p.to_string_lossy().into_owned());
                } else {
                    walk(&p, out);
                }
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| FILE_EXTENSIONS.contains(&e))
            {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    for a in args {
        let p = Path::new(a);
        if !a.contains("://") && p.is_dir() && !is_zarr_dir(p) {
            walk(p, &mut out);
        } else {
            out.push(a.clone());
        }
    }
    out
}

/// A file of a multi-file dataset seen in this run.
struct Member {
    source: String,
    url: String,
    /// Its own references changed.
    changed: bool,
}

pub async fn run(args: IngestArgs) -> ExitCode {
    match ingest(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let mut config = PipelineConfig::load(args.config.as_deref())?;
    if let Some(c) = args.catalog {
        config.output.catalog = c;
    }
    if let Some(r) = args.refs_root {
        config.output.refs_root = r;
    }
    if args.collection.is_some() {
        config.stac.collection = args.collection;
    }
    if let Some(n) = args.concurrency {
        config.run.concurrency = n;
    }
    let failed_log = FailedLog::open(&config.output.failed)?;
    let pipeline = Pipeline::new(config).await?;
    let sources = expand(&args.sources);
    let outcome = run_sources(&pipeline, sources, &failed_log, "summary").await?;
    pipeline.close().await;
    Ok(if outcome.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What a run over many sources did.
pub struct RunSummary {
    pub failed: u64,
    /// URLs of the sources that failed (recorded in the dead-letter file).
    pub failed_urls: BTreeSet<String>,
}

/// Runs the pipeline over `sources` with bounded concurrency and a progress bar: files of
/// multi-file datasets are combined once all are in, failures go to the dead-letter
/// file, collections are refreshed, and a summary line is printed.
pub async fn run_sources(
    pipeline: &Pipeline,
    sources: Vec<String>,
    failed_log: &FailedLog,
    label: &str,
) -> anyhow::Result<RunSummary> {
    let mut failed_urls = BTreeSet::new();
    let progress = ProgressBar::new(sources.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let pipeline_ref = pipeline;
    let mut results = futures::stream::iter(sources.iter().cloned())
        .map(|source| async move {
            let r = pipeline_ref.ingest(&source).await;
            (source, r)
        })
        .buffer_unordered(pipeline.config.run.concurrency.max(1));

    let (mut ingested, mut unchanged, mut failed) = (0u64, 0u64, 0u64);
    let mut collections = BTreeSet::new();
    // Files of multi-file datasets, by (collection, dataset id).
    let mut datasets: std::collections::BTreeMap<(String, String), Vec<Member>> =
        Default::default();
    while let Some((source, result)) = results.next().await {
        progress.inc(1);
        match result {
            Ok(done) if done.dataset.is_some() => {
                let key = (
                    done.collection.clone(),
                    done.dataset.clone().unwrap_or_default(),
                );
                datasets.entry(key).or_default().push(Member {
                    source,
                    url: done.url,
                    changed: done.changed,
                });
            }
            Ok(done) => {
                collections.insert(done.collection.clone());
                if done.changed {
                    ingested += 1;
                } else {
                    unchanged += 1;
                }
                progress.set_message(done.item_id);
            }
            Err(f) => {
                failed += 1;
                progress.suspend(|| eprintln!("error: {source}: {}", f.message));
                // Recorded by URL, so the same file is the same record however it was named.
                let url = zarrstac_io::Location::parse(&source)
                    .map(|l| l.url)
                    .unwrap_or(source.clone());
                failed_log.record(&url, f.class, &f.message).await?;
                failed_urls.insert(url);
            }
        }
    }
    progress.finish_and_clear();
    // Each multi-file dataset once, rebuilt from all its known files.
    for ((collection, id), files) in &datasets {
        let urls: Vec<String> = files.iter().map(|m| m.url.clone()).collect();
        match pipeline.rebuild_dataset(collection, id, &urls).await {
            Ok(changed) => {
                collections.insert(collection.clone());
                for m in files {
                    if changed || m.changed {
                        ingested += 1;
                    } else {
                        unchanged += 1;
                    }
                }
            }
            Err(f) => {
                for m in files {
                    failed += 1;
                    eprintln!("error: {}: {}", m.source, f.message);
                    failed_log.record(&m.url, f.class, &f.message).await?;
                    failed_urls.insert(m.url.clone());
                }
            }
        }
    }
    let collections: Vec<String> = collections.into_iter().collect();
    pipeline
        .catalog()
        .refresh(&collections)
        .await
        .map_err(|e| anyhow::anyhow!("updating collections: {e}"))?;
    let catalog_url = pipeline.catalog().url();
    drop(results);
    eprintln!(
        "{label}: {ingested} ingested, {failed} failed, {unchanged} skipped (unchanged); {} collections; catalog at {catalog_url}",
        collections.len(),
    );
    Ok(RunSummary {
        failed,
        failed_urls,
    })
}
