use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use zarrstac_formats::ScanOptions;
use zarrstac_io::{Location, RangeReader};
use zarrstac_model::Dataset;

#[derive(Args, Debug)]
pub struct CombineArgs {
    /// The files of one or more datasets (paths or URLs), in any order.
    #[arg(required = true)]
    sources: Vec<String>,
    /// Output: the combined references file (default: standard output); a directory
    /// receiving `<dataset id>.json` each when the files form several datasets.
    #[arg(short, long)]
    output: Option<String>,
    /// Chunks of at most this many bytes are copied into the references.
    #[arg(long, default_value_t = 500, value_name = "BYTES")]
    inline_threshold: u64,
    /// Sources read at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

async fn read(source: String, threshold: u64) -> anyhow::Result<Dataset> {
    let reader = RangeReader::open(Location::parse(&source)?).await?;
    let mut d = zarrstac_formats::scan(reader.clone(), &ScanOptions::default()).await?;
    zarrstac_refs::inline_small_chunks(&mut d, &reader, threshold).await?;
    Ok(d)
}

pub async fn run(args: CombineArgs) -> ExitCode {
    let mut datasets = Vec::new();
    let mut failed = 0;
    let mut reads = futures::stream::iter(args.sources.iter().cloned())
        .map(|s| async move { (s.clone(), read(s, args.inline_threshold).await) })
        .buffer_unordered(args.concurrency.max(1));
    while let Some((source, r)) = reads.next().await {
        match r {
            Ok(d) => datasets.push(d),
            Err(e) => {
                failed += 1;
                eprintln!("error: {source}: {e:#}");
            }
        }
    }
    if failed > 0 {
        eprintln!("summary: {failed} sources unreadable; nothing combined");
        return ExitCode::FAILURE;
    }
    // Files grouped by the dataset their attributes name.
    let mut groups: BTreeMap<String, Vec<Dataset>> = BTreeMap::new();
    let mut unnamed = Vec::new();
    for d in datasets {
        match zarrstac_refs::combine::dataset_id(&d) {
            Some(id) => groups.entry(id).or_default().push(d),
            None => unnamed.push(d),
        }
    }
    if !unnamed.is_empty() {
        if !groups.is_empty() {
            let names: Vec<&str> = unnamed.iter().map(|d| d.source_url.as_str()).collect();
            eprintln!(
                "error: cannot tell which dataset these files belong to (no CMIP attributes): {}",
                names.join(", ")
            );
            return ExitCode::FAILURE;
        }
        groups.insert("combined".into(), unnamed);
    }
    let several = groups.len() > 1;
    if several && args.output.is_none() {
        eprintln!(
            "error: the files form {} datasets ({}); -o must name a directory",
            groups.len(),
            groups.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        return ExitCode::FAILURE;
    }
    let (mut written, mut refused) = (0, 0);
    for (id, files) in groups {
        let n = files.len();
        let combined = match zarrstac_refs::combine(files) {
            Ok(c) => c,
            Err(e) => {
                refused += 1;
                eprintln!("error: {id}: {e}");
                continue;
            }
        };
        let records = combined
            .root
            .arrays
            .iter()
            .find(|a| {
                a.materialized
                    .as_deref()
                    .is_some_and(|m| m.starts_with("combined time"))
            })
            .map_or(0, |a| a.shape[0]);
        let mut bytes = Vec::new();
        if let Err(e) = zarrstac_refs::write_kerchunk(&combined, &mut bytes) {
            refused += 1;
            eprintln!("error: {id}: {e}");
            continue;
        }
        let target = match (&args.output, several) {
            (Some(o), true) => Location::parse(o).map(|l| Some(l.join(&format!("{id}.json")))),
            (Some(o), false) => Location::parse(o).map(Some),
            (None, _) => Ok(None),
        };
        let result = match target {
            Ok(Some(loc)) => loc
                .store
                .put(&loc.path, PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", loc.url)),
            Ok(None) => {
                use tokio::io::AsyncWriteExt;
                let mut out = tokio::io::stdout();
                async {
                    out.write_all(&bytes).await?;
                    out.flush().await
                }
                .await
                .map_err(anyhow::Error::from)
            }
            Err(e) => Err(anyhow::Error::from(e)),
        };
        match result {
            Ok(()) => {
                written += 1;
                eprintln!("combined {id}: {n} files, {records} time steps");
            }
            Err(e) => {
                refused += 1;
                eprintln!("error: {id}: {e:#}");
            }
        }
    }
    if several || refused > 0 {
        eprintln!("summary: {written} datasets combined, {refused} refused");
    }
    if refused > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
