use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use futures::StreamExt;
use serde_json::Value;
use zarrstac_catalog::{BatchWriter, ItemOutcome};

use zarrstac_pipeline::PipelineConfig;

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// STAC item files, newline-delimited item files (.ndjson, .jsonl), or directories
    /// (a static catalog: every item in it).
    #[arg(required = true)]
    items: Vec<PathBuf>,
    /// Catalog: a static catalog path or URL, an http(s) STAC API, or a postgresql://
    /// pgstac database.
    #[arg(long)]
    catalog: Option<String>,
    /// Pipeline configuration (default: ./pipeline.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Items per request.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Send items without checking them against the STAC schemas first (the catalog
    /// judges them).
    #[arg(long)]
    no_validate: bool,
}

/// Reads the items of one file: a JSON item, or one item per line.
fn read_items(path: &PathBuf) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let lines = path
        .extension()
        .is_some_and(|e| e == "ndjson" || e == "jsonl");
    let docs: Vec<Value> = if lines {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(k, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", k + 1)))
            .collect::<Result<_, _>>()?
    } else {
        vec![serde_json::from_str(&text).map_err(|e| e.to_string())?]
    };
    Ok(docs
        .into_iter()
        .filter(|d| d["type"] == "Feature")
        .collect())
}

pub async fn run(args: PublishArgs) -> ExitCode {
    super::exit(publish(args).await)
}

/// Upserts existing items into a catalog; one line per refused item, then a summary.
async fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let mut config = PipelineConfig::load(args.config.as_deref())?;
    if let Some(c) = args.catalog {
        config.output.catalog = c;
    }
    if let Some(n) = args.batch_size {
        config.catalog.batch_size = n;
    }
    let sink = zarrstac_catalog::open(&config.output.catalog, &config.catalog).await?;
    let writer = BatchWriter::new(
        sink.clone(),
        config.catalog.batch_size,
        std::time::Duration::from_millis(config.catalog.batch_linger_ms),
    );
    let validator = (!args.no_validate).then(zarrstac_stac::Validator::new);
    let mut files = Vec::new();
    for p in &args.items {
        super::validate::collect(p, &mut files);
    }
    let (mut written, mut unchanged, mut refused) = (0u64, 0u64, 0u64);
    let mut items = Vec::new();
    for f in &files {
        match read_items(f) {
            Ok(found) => items.extend(found),
            Err(e) => {
                refused += 1;
                eprintln!("error: {}: {e}", f.display());
            }
        }
    }
    let mut collections = std::collections::BTreeSet::new();
    let writer_ref = &writer;
    let sink_ref = &sink;
    let validator_ref = &validator;
    // Enough items in flight to fill a batch.
    let in_flight = config.catalog.batch_size.max(1) * 2;
    let mut results = futures::stream::iter(items)
        .map(|mut item| async move {
            let id = item["id"].as_str().unwrap_or("?").to_string();
            let collection = item["collection"].as_str().unwrap_or_default().to_string();
            sink_ref.prepare_item(&mut item);
            if let Some(v) = validator_ref {
                let problems = v.validate(&item);
                if let Some(p) = problems.first() {
                    return (
                        id,
                        collection,
                        Ok(ItemOutcome::Rejected(format!(
                            "violates the STAC schemas: {p}"
                        ))),
                    );
                }
            }
            (id, collection, writer_ref.write(item).await)
        })
        .buffer_unordered(in_flight);
    while let Some((id, collection, outcome)) = results.next().await {
        match outcome {
            Ok(ItemOutcome::Written) => {
                written += 1;
                collections.insert(collection);
            }
            Ok(ItemOutcome::Unchanged) => unchanged += 1,
            Ok(ItemOutcome::Rejected(reason)) => {
                refused += 1;
                eprintln!("error: {id}: {reason}");
            }
            Err(e) => {
                refused += 1;
                eprintln!("error: {id}: {e}");
            }
        }
    }
    drop(results);
    writer.close().await;
    let collections: Vec<String> = collections.into_iter().collect();
    sink.refresh(&collections).await?;
    eprintln!(
        "summary: {written} published, {refused} refused, {unchanged} unchanged; catalog at {}",
        sink.url()
    );
    Ok(if refused > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
