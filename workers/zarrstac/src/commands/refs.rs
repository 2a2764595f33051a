use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use zarrstac_formats::ScanOptions;
use zarrstac_io::{Location, RangeReader};
use zarrstac_refs::{VariableOutcome, VariableReport};

#[derive(Args, Debug)]
pub struct RefsArgs {
    /// NetCDF/HDF5 files: local paths or URLs (file://, s3://, gs://, az://, http(s)://).
    #[arg(required = true)]
    sources: Vec<String>,
    /// Output: with one source, the references file (default: standard output); with
    /// several, a directory receiving `<source file name>.json` each. A path or URL.
    #[arg(short, long)]
    output: Option<String>,
    /// Chunks of at most this many bytes are copied into the references (base64).
    #[arg(long, default_value_t = 500, value_name = "BYTES")]
    inline_threshold: u64,
    /// Largest decoded variable that may be read and inlined when its stored form cannot
    /// be referenced (unsupported filter, variable-length strings); larger ones are refused.
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    materialize_limit: u64,
    /// Exit with status 1 when any variable was refused.
    #[arg(long)]
    strict: bool,
    /// Print the range requests made, round trips (waves of concurrent requests) and bytes
    /// read per source.
    #[arg(long)]
    stats: bool,
    /// Sources processed at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// kerchunk-json: one JSON document per source; kerchunk-parquet: a directory per
    /// source (`.zmetadata` and `<variable>/refs.<n>.parq`, as fsspec's
    /// LazyReferenceMapper reads it), for sources of very many chunks.
    #[arg(long, default_value = "kerchunk-json", value_parser = ["kerchunk-json", "kerchunk-parquet"])]
    format: String,
    /// Chunks per parquet reference file (kerchunk-parquet).
    #[arg(long, default_value_t = zarrstac_refs::parquet::DEFAULT_RECORD_SIZE, value_name = "CHUNKS")]
    record_size: usize,
}

impl RefsArgs {
    fn parquet(&self) -> bool {
        self.format == "kerchunk-parquet"
    }
}

/// The outcome of one source.
struct Done {
    source: String,
    report: Vec<VariableReport>,
    requests: u64,
    round_trips: u64,
    bytes_read: u64,
    size: u64,
    /// Milliseconds spent reading metadata, inlining small chunks, writing references.
    stage_ms: [u128; 3],
}

pub async fn run(args: RefsArgs) -> ExitCode {
    let several = args.sources.len() > 1;
    if several && args.output.is_none() {
        eprintln!("error: with several sources, -o/--output must name a directory");
        return ExitCode::FAILURE;
    }
    if args.parquet() && args.output.is_none() {
        eprintln!("error: kerchunk-parquet references are a directory: name it with -o/--output");
        return ExitCode::FAILURE;
    }
    let options = ScanOptions {
        materialize_limit: args.materialize_limit,
        ..ScanOptions::default()
    };
    let out_dir = if several {
        match args.output.as_deref().map(Location::parse) {
            Some(Ok(loc)) => Some(loc),
            Some(Err(e)) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            None => None,
        }
    } else {
        None
    };
    let args = &args;
    let options = &options;
    let out_dir = &out_dir;
    let mut results = futures::stream::iter(args.sources.iter().cloned())
        .map(|source| async move {
            let target = match out_dir {
                Some(dir) => {
                    let name = source
                        .trim_end_matches('/')
                        .rsplit('/')
                        .next()
                        .unwrap_or(&source)
                        .to_string();
                    let extension = if args.parquet() { "parq" } else { "json" };
                    Some(dir.join(&format!("{name}.{extension}")))
                }
                None => match args.output.as_deref() {
                    Some(o) => match Location::parse(o) {
                        Ok(l) => Some(l),
                        Err(e) => return (source, Err(anyhow::Error::new(e))),
                    },
                    None => None,
                },
            };
            let result = one(&source, target, args, options).await;
            (source, result)
        })
        .buffer_unordered(args.concurrency.max(1));

    let (mut written, mut failed, mut refused_total) = (0u64, 0u64, 0u64);
    while let Some((source, result)) = results.next().await {
        match result {
            Ok(done) => {
                written += 1;
                for r in &done.report {
                    if matches!(r.outcome, VariableOutcome::Refused { .. }) {
                        refused_total += 1;
                    }
                    eprintln!(
                        "{}{r}",
                        if several {
                            format!("{}: ", done.source)
                        } else {
                            String::new()
                        }
                    );
                }
                if args.stats {
                    eprintln!(
                        "stats    {}: {} range requests in {} round trips, {} bytes read of {}; scan {} ms, inline {} ms, write {} ms",
                        done.source,
                        done.requests,
                        done.round_trips,
                        done.bytes_read,
                        done.size,
                        done.stage_ms[0],
                        done.stage_ms[1],
                        done.stage_ms[2]
                    );
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {source}: {}", one_line(&e));
            }
        }
    }
    if several || failed > 0 || refused_total > 0 {
        eprintln!("summary: {written} written, {failed} failed, {refused_total} variables refused");
    }
    if failed > 0 || (args.strict && refused_total > 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// An error and its causes on one line, without repeating a cause already in the text.
fn one_line(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if s.contains(&text) {
            continue;
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&text);
    }
    s.replace('\n', " ")
}

async fn one(
    source: &str,
    target: Option<Location>,
    args: &RefsArgs,
    options: &ScanOptions,
) -> anyhow::Result<Done> {
    let started = std::time::Instant::now();
    let location = Location::parse(source)?;
    let reader = RangeReader::open(location).await?;
    let mut dataset = zarrstac_formats::scan(reader.clone(), options).await?;
    let scanned = started.elapsed();
    zarrstac_refs::inline_small_chunks(&mut dataset, &reader, args.inline_threshold)
        .await
        .context("reading small chunks to inline")?;
    let inlined = started.elapsed();
    let report = zarrstac_refs::report(&dataset);
    if args.parquet() {
        let record_size = args.record_size;
        let files = tokio::task::spawn_blocking(move || {
            zarrstac_refs::parquet::kerchunk_parquet(&dataset, record_size)
        })
        .await??;
        let root = target.context("kerchunk-parquet needs -o/--output")?;
        super::write_parquet_store(&root, files).await?;
    } else {
        let bytes =
            tokio::task::spawn_blocking(move || zarrstac_refs::kerchunk_bytes(&dataset)).await??;
        match target {
            Some(loc) => {
                loc.store
                    .put(&loc.path, PutPayload::from(bytes))
                    .await
                    .with_context(|| format!("writing {}", loc.url))?;
            }
            None => {
                use tokio::io::AsyncWriteExt;
                let mut stdout = tokio::io::stdout();
                stdout.write_all(&bytes).await?;
                stdout.flush().await?;
            }
        }
    }
    Ok(Done {
        source: source.to_string(),
        report,
        requests: reader.stats().requests(),
        round_trips: reader.stats().round_trips(),
        bytes_read: reader.stats().bytes(),
        size: reader.size(),
        stage_ms: [
            scanned.as_millis(),
            (inlined - scanned).as_millis(),
            (started.elapsed() - inlined).as_millis(),
        ],
    })
}
