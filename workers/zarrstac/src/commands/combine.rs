use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use zarrstac_formats::ScanOptions;
use zarrstac_io::Location;
use zarrstac_model::Dataset;

#[derive(Args, Debug)]
pub struct CombineArgs {
    /// The files of one or more datasets, in any order: NetCDF/HDF5 files or their
    /// kerchunk references (`.json`), as paths, URLs or directories holding them.
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
    /// Also write each dataset's STAC item (one item per dataset, an asset per file)
    /// beside its references as `<references name>.item.json`; needs -o.
    #[arg(long, requires = "output")]
    item: bool,
    /// Collection of the dataset items (default: `CMIP6` for CMIP6 datasets, else the
    /// dataset family).
    #[arg(long)]
    collection: Option<String>,
    /// The PID of the dataset (a CMIP6 dataset's handle, `hdl:21.14100/...`), for its
    /// item to declare the cmip6 extension; only when the files form one dataset.
    #[arg(long, requires = "item", value_name = "HANDLE")]
    dataset_pid: Option<String>,
    /// The PIDs of CMIP6 datasets: a CSV (`dataset_id,pid[,retracted]`) or JSON file,
    /// as `datasets.pid_table`.
    #[arg(long, requires = "item", value_name = "PATH")]
    pid_table: Option<String>,
    /// The data node serving the files, named on each asset (`alternate:name`).
    #[arg(long, requires = "item")]
    data_node: Option<String>,
    /// kerchunk-json: one JSON document per dataset; kerchunk-parquet: a directory per
    /// dataset, as `refs --format kerchunk-parquet` writes it (not with --item yet).
    #[arg(long, default_value = "kerchunk-json", value_parser = ["kerchunk-json", "kerchunk-parquet"])]
    format: String,
    /// Chunks per parquet reference file (kerchunk-parquet).
    #[arg(long, default_value_t = zarrstac_refs::parquet::DEFAULT_RECORD_SIZE, value_name = "CHUNKS")]
    record_size: usize,
    /// Group files whose attributes name no CMIP dataset by their path: `/`-separated
    /// literal parts and `{facet}` placeholders describing the path's tail, e.g.
    /// `{project}/{domain}/{institute}/{model}/{experiment}/{ensemble}/{rcm}/{version}/{frequency}/{variable}/{filename}`.
    #[arg(long)]
    path_template: Option<String>,
}

async fn read(source: String, threshold: u64) -> anyhow::Result<Dataset> {
    let location = Location::parse(&source)?;
    if source.ends_with(".json") {
        let bytes = location.store.get(&location.path).await?.bytes().await?;
        let url = location.url.clone();
        return Ok(tokio::task::spawn_blocking(move || {
            zarrstac_formats::kerchunk::from_references(&url, &bytes)
        })
        .await??);
    }
    let reader = zarrstac_io::RangeReader::open(location).await?;
    zarrstac_pipeline::stages::scan_inlined(reader, &ScanOptions::default(), threshold)
        .await
        .map_err(|f| anyhow::anyhow!(f.message))
}

/// Directories stand for the NetCDF/HDF5 files and references in them (sorted).
fn expand(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for a in args {
        let p = std::path::Path::new(a);
        if !a.contains("://") && p.is_dir() {
            let mut found: Vec<String> = std::fs::read_dir(p)
                .map(|r| r.flatten().map(|e| e.path()).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .filter(|f| {
                    f.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| ["nc", "nc4", "h5", "hdf5", "json"].contains(&e))
                })
                .map(|f| f.to_string_lossy().into_owned())
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(a.clone());
        }
    }
    out
}

pub async fn run(args: CombineArgs) -> ExitCode {
    let mut datasets = Vec::new();
    let mut failed = 0;
    let sources = expand(&args.sources);
    let mut reads = futures::stream::iter(sources)
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
        let by_path = args
            .path_template
            .as_deref()
            .and_then(|t| zarrstac_refs::combine::dataset_id_from_path(&d.source_url, t));
        match zarrstac_refs::combine::dataset_id(&d).or(by_path) {
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
        // No attributes name the dataset: call it after its first file.
        let mut names: Vec<&str> = unnamed
            .iter()
            .map(|d| d.source_url.rsplit('/').next().unwrap_or(&d.source_url))
            .collect();
        names.sort_unstable();
        let id = names[0].split('.').next().unwrap_or("combined").to_string();
        groups.insert(id, unnamed);
    }
    let several = groups.len() > 1;
    if several && args.dataset_pid.is_some() {
        eprintln!(
            "error: --dataset-pid names the PID of one dataset, and the files form {} ({}); use --pid-table",
            groups.len(),
            groups.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        return ExitCode::FAILURE;
    }
    let pid_table = match &args.pid_table {
        None => None,
        Some(source) => match zarrstac_pipeline::pid_table::PidTable::load(source).await {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let publishing = Publishing {
        said: zarrstac_pipeline::DatasetPublication {
            pid: args.dataset_pid.clone(),
            retracted: None,
        },
        table: pid_table,
        datasets: zarrstac_pipeline::config::DatasetsConfig {
            data_node: args.data_node.clone(),
            ..Default::default()
        },
    };
    let parquet = args.format == "kerchunk-parquet";
    if parquet && (args.item || args.output.is_none()) {
        eprintln!(
            "error: kerchunk-parquet references are a directory named by -o/--output, and --item does not take them yet"
        );
        return ExitCode::FAILURE;
    }
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
        let mut members: Vec<zarrstac_stac::netcdf::DatasetMember> = if args.item {
            files
                .iter()
                .map(zarrstac_stac::netcdf::DatasetMember::of)
                .collect()
        } else {
            Vec::new()
        };
        members.sort_by(|a, b| a.url.cmp(&b.url));
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
        let extension = if parquet { "parq" } else { "json" };
        let target = match (&args.output, several) {
            (Some(o), true) => {
                Location::parse(o).map(|l| Some(l.join(&format!("{id}.{extension}"))))
            }
            (Some(o), false) => Location::parse(o).map(Some),
            (None, _) => Ok(None),
        };
        let result = if parquet {
            match (
                zarrstac_refs::parquet::kerchunk_parquet(&combined, args.record_size),
                target,
            ) {
                (Ok(files), Ok(Some(root))) => super::write_parquet_store(&root, files).await,
                (Err(e), _) => Err(anyhow::Error::from(e)),
                (_, Err(e)) => Err(anyhow::Error::from(e)),
                (_, Ok(None)) => Err(anyhow::anyhow!("kerchunk-parquet needs -o/--output")),
            }
        } else {
            match zarrstac_refs::kerchunk_bytes(&combined) {
                Ok(bytes) => {
                    write_json(bytes, target, &args, &id, &members, &combined, &publishing).await
                }
                Err(e) => Err(anyhow::Error::from(e)),
            }
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

/// Writes a dataset's combined JSON references where `target` says (standard output when
/// it says nothing), and its item beside them with --item.
async fn write_json(
    bytes: Vec<u8>,
    target: Result<Option<Location>, zarrstac_io::LocationError>,
    args: &CombineArgs,
    id: &str,
    members: &[zarrstac_stac::netcdf::DatasetMember],
    combined: &Dataset,
    publishing: &Publishing,
) -> anyhow::Result<()> {
    match target {
        Ok(Some(loc)) => {
            let written = loc
                .store
                .put(&loc.path, PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", loc.url));
            match written {
                Ok(()) if args.item => {
                    let item = ItemPlace {
                        refs: &loc,
                        collection: args.collection.clone(),
                    };
                    write_item(id, members, combined, item, publishing).await
                }
                other => other,
            }
        }
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
    }
}

/// What dataset items state of their publication (CMIP6: PIDs, the data node).
struct Publishing {
    said: zarrstac_pipeline::DatasetPublication,
    table: Option<zarrstac_pipeline::pid_table::PidTable>,
    datasets: zarrstac_pipeline::config::DatasetsConfig,
}

/// Where a dataset's item goes: beside its references, in its collection.
struct ItemPlace<'a> {
    refs: &'a Location,
    collection: Option<String>,
}

/// Builds, validates and writes the dataset item beside its references.
async fn write_item(
    id: &str,
    members: &[zarrstac_stac::netcdf::DatasetMember],
    combined: &Dataset,
    place: ItemPlace<'_>,
    publishing: &Publishing,
) -> anyhow::Result<()> {
    let refs = place.refs;
    let opts = zarrstac_stac::ItemOptions {
        collection: Some(
            place
                .collection
                .unwrap_or_else(|| zarrstac_stac::netcdf::dataset_collection(combined)),
        ),
        refs_href: Some(refs.url.clone()),
        ..Default::default()
    };
    let item_id = zarrstac_stac::netcdf::dataset_item_id(id, members);
    let mut item = zarrstac_stac::netcdf::item_for_dataset(&item_id, members, combined, &opts)?;
    zarrstac_catalog::StaticCatalog::link_item(&mut item);
    let validator = zarrstac_stac::Validator::new();
    let publication = zarrstac_pipeline::pid_table::publication(
        &item_id,
        &publishing.said,
        publishing.table.as_ref(),
        &publishing.datasets,
    );
    if let zarrstac_stac::cmip6::Declaration::Undeclared(reason) =
        zarrstac_stac::cmip6::declare(&mut item, members, combined, &publication, &validator)
    {
        eprintln!("note: dataset item {item_id}: the cmip6 extension is not declared: {reason}");
    }
    let problems = validator.validate(&item);
    if let Some(p) = problems.first() {
        anyhow::bail!(
            "dataset item violates the STAC schemas ({} problems): {p}",
            problems.len()
        );
    }
    let name = refs.url.rsplit('/').next().unwrap_or("dataset.json");
    let stem = name.strip_suffix(".json").unwrap_or(name);
    let url = refs.url.strip_suffix(name).unwrap_or(&refs.url).to_string() + stem + ".item.json";
    let target = Location::parse(&url)?;
    let mut text = serde_json::to_vec_pretty(&item)?;
    text.push(b'\n');
    target
        .store
        .put(&target.path, PutPayload::from(text))
        .await
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", target.url))?;
    Ok(())
}
