use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Args, Debug)]
pub struct BackfillArgs {
    /// Prefix to list: a directory, or an object-store URL (s3://bucket/prefix/, ...).
    prefix: String,
    /// Only objects whose URL matches this glob (e.g. '**/*.nc').
    #[arg(long = "match")]
    glob: Option<String>,
    /// Only objects modified at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// List and count, enqueue nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run the pipeline in this process instead of enqueueing requests on Kafka.
    #[arg(long)]
    inline: bool,
    /// Progress file; an interrupted backfill with the same prefix and filters resumes
    /// after its last finished page (default: out/backfill-<hash>.json).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Objects per page (one checkpoint per page).
    #[arg(long, default_value_t = 1000)]
    page_size: usize,
    /// Configuration, and with --inline the catalog and references.
    #[command(flatten)]
    pipeline: super::PipelineFlags,
    /// Where requests are enqueued.
    #[command(flatten)]
    queue: super::QueueFlags,
}

/// How far a backfill got.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Checkpoint {
    prefix: String,
    glob: Option<String>,
    since: Option<String>,
    /// The last object key of the last finished page.
    after: Option<String>,
    pages: u64,
    enqueued: u64,
    finished: bool,
}

fn read_checkpoint(path: &Path) -> Option<Checkpoint> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write_checkpoint(path: &Path, c: &Checkpoint) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, serde_json::to_vec_pretty(c)?)?;
    std::fs::rename(&aside, path).map_err(|e| anyhow::anyhow!("checkpoint {}: {e}", path.display()))
}

pub async fn run(args: BackfillArgs) -> ExitCode {
    super::exit(backfill(args).await)
}

/// What a listed object must satisfy.
pub struct Selection {
    pub glob: Option<globset::GlobMatcher>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

impl Selection {
    pub fn new(glob: Option<&str>, since: Option<&str>) -> anyhow::Result<Selection> {
        Ok(Selection {
            glob: glob
                .map(|g| {
                    globset::Glob::new(g)
                        .map(|g| g.compile_matcher())
                        .map_err(|e| anyhow::anyhow!("--match {g}: {e}"))
                })
                .transpose()?,
            since: since
                .map(|t| {
                    chrono::DateTime::parse_from_rfc3339(t)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .map_err(|e| anyhow::anyhow!("--since {t}: not an RFC 3339 time: {e}"))
                })
                .transpose()?,
        })
    }

    fn keeps(&self, url: &str, meta: &object_store::ObjectMeta) -> bool {
        self.glob.as_ref().is_none_or(|g| g.is_match(url))
            && self.since.is_none_or(|s| meta.last_modified >= s)
    }
}

/// Pages of a prefix's listing in key order, from after a key: only one page is in
/// memory at a time (local directories aside, which are sorted first).
pub struct Pages<'a> {
    prefix: &'a zarrstac_io::Location,
    selection: &'a Selection,
    after: Option<String>,
    page_size: usize,
    listing: futures::stream::BoxStream<'a, object_store::Result<object_store::ObjectMeta>>,
    last: Option<String>,
    /// The Zarr store already given for the keys being listed: a store's keys are
    /// contiguous in key order, and its root documents (`.zgroup`, `.zmetadata`) are
    /// several objects for one source.
    store_given: Option<String>,
}

impl<'a> Pages<'a> {
    pub async fn new(
        prefix: &'a zarrstac_io::Location,
        selection: &'a Selection,
        after: Option<String>,
        page_size: usize,
    ) -> anyhow::Result<Pages<'a>> {
        let mut listing = match &after {
            Some(o) => prefix.store.list_with_offset(
                Some(&prefix.path),
                &object_store::path::Path::from(o.as_str()),
            ),
            None => prefix.store.list(Some(&prefix.path)),
        };
        // Object stores list in key order; a local directory walk does not.
        if prefix.local_path.is_some() {
            let mut all: Vec<object_store::ObjectMeta> = Vec::new();
            while let Some(meta) = listing.next().await {
                all.push(meta.map_err(|e| anyhow::anyhow!("listing {}: {e}", prefix.url))?);
            }
            all.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
            listing = futures::stream::iter(all.into_iter().map(Ok)).boxed();
        }
        Ok(Pages {
            prefix,
            selection,
            after,
            page_size: page_size.max(1),
            listing,
            last: None,
            store_given: None,
        })
    }

    /// The next page's selected URLs and the last key listed for it.
    pub async fn next_page(&mut self) -> anyhow::Result<Option<(Vec<String>, String)>> {
        let mut urls = Vec::with_capacity(self.page_size);
        while let Some(meta) = self.listing.next().await {
            let meta = meta.map_err(|e| anyhow::anyhow!("listing {}: {e}", self.prefix.url))?;
            let key = meta.location.to_string();
            // Resuming relies on key order: refuse a listing out of order rather than
            // skip objects.
            if let Some(prev) = &self.last
                && key <= *prev
            {
                anyhow::bail!(
                    "listing {}: keys out of order ({key} after {prev}); cannot checkpoint",
                    self.prefix.url
                );
            }
            if self.after.as_deref().is_some_and(|a| key.as_str() <= a) {
                continue;
            }
            self.last = Some(key.clone());
            let Some(source) = zarrstac_queue::events::source_key(&key) else {
                continue;
            };
            if source != key {
                if self.store_given.as_deref() == Some(source) {
                    continue;
                }
                self.store_given = Some(source.to_string());
            }
            let url = self.prefix.url_of(&object_store::path::Path::from(source));
            if self.selection.keeps(&url, &meta) {
                urls.push(url);
            }
            if urls.len() >= self.page_size {
                return Ok(Some((urls, key)));
            }
        }
        Ok(match (&self.last, urls.is_empty()) {
            (Some(key), false) => Some((urls, key.clone())),
            _ => None,
        })
    }
}

async fn backfill(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.pipeline.load()?;
    config.set_queue(&args.queue.brokers, &args.queue.topic, &None);
    let prefix = zarrstac_io::Location::parse(&args.prefix)?;
    let selection = Selection::new(args.glob.as_deref(), args.since.as_deref())?;
    let checkpoint_path = args.checkpoint.clone().unwrap_or_else(|| {
        let id = format!("{}|{:?}|{:?}", prefix.url, args.glob, args.since);
        let hash = zarrstac_io::fnv1a(id.as_bytes());
        PathBuf::from(format!("out/backfill-{hash:016x}.json"))
    });
    let fresh = Checkpoint {
        prefix: prefix.url.clone(),
        glob: args.glob.clone(),
        since: args.since.clone(),
        after: None,
        pages: 0,
        enqueued: 0,
        finished: false,
    };
    let mut state = match read_checkpoint(&checkpoint_path) {
        Some(c)
            if !c.finished
                && !args.dry_run
                && c.prefix == fresh.prefix
                && c.glob == fresh.glob
                && c.since == fresh.since =>
        {
            eprintln!(
                "resuming after {} pages ({} enqueued), from {}",
                c.pages,
                c.enqueued,
                checkpoint_path.display()
            );
            c
        }
        _ => fresh,
    };
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {pos} objects {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    progress.set_position(state.enqueued);
    let after = state.after.clone();
    let failed_log;
    let runner;
    let producer: Option<rdkafka::producer::FutureProducer>;
    if args.inline && !args.dry_run {
        failed_log = Some(zarrstac_pipeline::outcome::failed_log::FailedLog::open(
            &config.output.failed,
        )?);
        runner = Some(zarrstac_pipeline::Runner::new(std::sync::Arc::new(
            zarrstac_pipeline::Stages::new(config.clone()).await?,
        )));
        producer = None;
    } else {
        failed_log = None;
        runner = None;
        producer = if args.dry_run {
            None
        } else {
            crate::worker::ensure_topics(&config.worker, &[&config.worker.topic]).await?;
            Some(config.worker.kafka_producer().create()?)
        };
    }
    let topic = config.worker.topic.clone();
    let mut failed = 0u64;
    let mut listed = 0u64;
    let mut pages = Pages::new(&prefix, &selection, after, args.page_size).await?;
    while let Some((urls, last_key)) = pages.next_page().await? {
        let n = urls.len() as u64;
        listed += n;
        if args.dry_run {
            progress.inc(n);
            continue;
        }
        if let (Some(r), Some(log)) = (&runner, &failed_log) {
            let label = format!("page {}", state.pages + 1);
            let summary = crate::batch::run_batch(r, urls, log, &label).await?;
            failed += summary.failed;
        } else if let Some(producer) = &producer {
            let topic = &topic;
            let sends = urls.iter().map(|url| async move {
                let request = zarrstac_queue::Request {
                    url: url.clone(),
                    collection: None,
                    kind: None,
                    dataset_pid: None,
                    retracted: None,
                };
                let key = zarrstac_queue::request_key(&request);
                let payload = zarrstac_queue::encode_request(&request);
                let record = rdkafka::producer::FutureRecord::to(topic)
                    .key(&key)
                    .payload(&payload);
                producer
                    .send(record, std::time::Duration::from_secs(60))
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| anyhow::anyhow!("enqueueing {url}: {e}"))
            });
            for r in futures::future::join_all(sends).await {
                r?;
            }
        }
        // The page is on the topic (or ingested): it is never listed again.
        state.after = Some(last_key);
        state.pages += 1;
        state.enqueued += n;
        write_checkpoint(&checkpoint_path, &state)?;
        progress.inc(n);
    }
    progress.finish_and_clear();
    if args.dry_run {
        eprintln!("summary: {listed} objects would be enqueued (dry run)");
        return Ok(ExitCode::SUCCESS);
    }
    state.finished = true;
    write_checkpoint(&checkpoint_path, &state)?;
    if let Some(r) = runner {
        crate::batch::close(r).await;
    }
    eprintln!(
        "summary: {} objects in {} pages {}; checkpoint {}",
        state.enqueued,
        state.pages,
        if args.inline {
            format!("ingested in-process ({failed} failed)")
        } else {
            format!("enqueued on {topic}")
        },
        checkpoint_path.display()
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn a_zarr_store_is_listed_once_as_the_store() {
        let store = Arc::new(InMemory::new());
        for key in [
            "archive/a.nc",
            "archive/s2.zarr/.zattrs",
            "archive/s2.zarr/.zgroup",
            "archive/s2.zarr/.zmetadata",
            "archive/s2.zarr/measurements/b02/0.0",
            "archive/v3.zarr/m/b02/c/0/0",
            "archive/v3.zarr/m/zarr.json",
            "archive/v3.zarr/zarr.json",
            "archive/w.zarr/m/c/0",
            "archive/z.h5",
        ] {
            store
                .put(&key.into(), bytes::Bytes::from_static(b"x").into())
                .await
                .unwrap();
        }
        let prefix = zarrstac_io::Location {
            store,
            path: "archive".into(),
            url: "memory:///archive".into(),
            local_path: None,
        };
        let selection = Selection::new(None, None).unwrap();
        // Pages of two: a store's keys spanning a page boundary still give it once.
        let mut pages = Pages::new(&prefix, &selection, None, 2).await.unwrap();
        let mut all = Vec::new();
        while let Some((urls, _)) = pages.next_page().await.unwrap() {
            all.extend(urls);
        }
        assert_eq!(
            all,
            [
                "memory:///archive/a.nc",
                "memory:///archive/s2.zarr",
                "memory:///archive/v3.zarr",
                "memory:///archive/z.h5"
            ]
        );
    }
}
