//! The runner and the datasets module against in-memory stores and an in-memory catalog:
//! the same files give the same outputs however they arrive, and transient catalog
//! failures are retried.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use object_store::ObjectStoreExt;
use serde_json::Value;
use zarrstac_catalog::{CatalogError, CatalogSink, ItemOutcome, StaticCatalog};
use zarrstac_io::Location;
use zarrstac_pipeline::outcome::failed_log::FailedLog;
use zarrstac_pipeline::{NoProgress, Outcome, PipelineConfig, Request, Runner, Stages};

/// The CMIP5 series: 13 NetCDF-3 files of one dataset.
fn series() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/shared/cmip5-netcdf3-series");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .collect();
    files.sort();
    files
}

fn config(root: &str) -> PipelineConfig {
    let mut c = PipelineConfig::default();
    c.output.refs_root = format!("memory://{root}/refs");
    c.output.catalog = format!("memory://{root}/catalog");
    c.output.failed = std::env::temp_dir()
        .join(format!("zarrstac-{root}-failed.jsonl"))
        .to_string_lossy()
        .into_owned();
    let _ = std::fs::remove_file(&c.output.failed);
    c.run.retry.initial_backoff_ms = 1;
    c.run.retry.max_backoff_ms = 2;
    c
}

async fn runner(root: &str, sink: Option<Arc<dyn CatalogSink>>) -> Runner {
    runner_with(root, sink, |_| {}).await
}

async fn runner_with(
    root: &str,
    sink: Option<Arc<dyn CatalogSink>>,
    tweak: impl Fn(&mut PipelineConfig),
) -> Runner {
    let mut c = config(root);
    tweak(&mut c);
    let stages = match sink {
        Some(s) => Stages::with_sink(c, s).unwrap(),
        None => Stages::new(c).await.unwrap(),
    };
    Runner::new(Arc::new(stages))
}

async fn finish(r: Runner) {
    if let Ok(s) = Arc::try_unwrap(r.into_stages()) {
        s.close().await;
    }
}

async fn batch(root: &str, files: &[String]) {
    batch_with(root, files, |_| {}).await
}

async fn batch_with(root: &str, files: &[String], tweak: impl Fn(&mut PipelineConfig)) {
    let r = runner_with(root, None, tweak).await;
    let log = FailedLog::open(&r.stages().config.output.failed).unwrap();
    let requests = files.iter().map(Request::new).collect();
    let summary = r.run_batch(requests, &log, &NoProgress).await.unwrap();
    assert_eq!(summary.failed, 0, "{:?}", summary.failed_urls);
    finish(r).await;
}

/// Every object under `memory://{root}/` but the stored dataset state and member
/// records (whose bytes may differ with the path taken), by path, with the store's name
/// replaced.
async fn outputs(root: &str) -> Vec<(String, Vec<u8>)> {
    use futures::TryStreamExt;
    let loc = Location::parse(&format!("memory://{root}/")).unwrap();
    let listed: Vec<object_store::ObjectMeta> = loc.store.list(None).try_collect().await.unwrap();
    let mut out = Vec::new();
    for m in listed {
        let path = m.location.to_string();
        if path.contains(".members/") || path.ends_with(".dataset") {
            continue;
        }
        let bytes = loc
            .store
            .get(&m.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        // Runs differ by their store's name only.
        let text =
            String::from_utf8_lossy(&bytes).replace(&format!("memory://{root}/"), "memory://ROOT/");
        out.push((path, text.into_bytes()));
    }
    out.sort();
    out
}

/// Asserts the same objects with the same bytes, naming the ones that differ.
fn assert_same(got: &[(String, Vec<u8>)], want: &[(String, Vec<u8>)], what: &str) {
    let names = |o: &[(String, Vec<u8>)]| o.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: other objects");
    let differing: Vec<&String> = got
        .iter()
        .zip(want)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| &a.0)
        .collect();
    if let Some(first) = differing.first() {
        let a = &got.iter().find(|o| &o.0 == *first).unwrap().1;
        let b = &want.iter().find(|o| &o.0 == *first).unwrap().1;
        let dir = std::env::temp_dir();
        std::fs::write(dir.join("zarrstac-got.json"), a).unwrap();
        std::fs::write(dir.join("zarrstac-want.json"), b).unwrap();
        panic!(
            "{what}: {differing:?} differ (first written to {}/zarrstac-got.json and -want.json)",
            dir.display()
        );
    }
}

fn dataset_item(objects: &[(String, Vec<u8>)]) -> Value {
    let (_, bytes) = objects
        .iter()
        .find(|(p, _)| {
            p.starts_with("catalog/") && p.contains("CMIP5.output") && !p.contains("/assets/")
        })
        .unwrap_or_else(|| {
            panic!(
                "no dataset item in {:?}",
                objects.iter().map(|o| &o.0).collect::<Vec<_>>()
            )
        });
    serde_json::from_slice(bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_one_by_one_and_two_workers_give_identical_outputs() {
    let files = series();
    assert_eq!(files.len(), 13);

    batch("batch", &files).await;
    let reference = outputs("batch").await;
    let item = dataset_item(&reference);
    assert_eq!(
        item["assets"].as_object().unwrap().len(),
        14,
        "13 files and the store"
    );
    assert!(
        reference.iter().any(|(p, _)| p.ends_with(
            "CMIP5.output.MOHC.HadGEM2-ES.rcp85.mon.atmos.Amon.r1i1p1.tas.v20111124.json"
        )),
        "combined references: {:?}",
        reference.iter().map(|o| &o.0).collect::<Vec<_>>()
    );

    // One file per run, out of time order: appends and recombinations from what is stored.
    let mut shuffled = files.clone();
    shuffled.swap(0, 7);
    shuffled.swap(3, 12);
    for f in &shuffled {
        batch("single", std::slice::from_ref(f)).await;
    }
    assert_same(&outputs("single").await, &reference, "one by one");

    // One batch whose dataset is rebuilt every 4 files (run.max_files_per_rebuild).
    batch_with("chunked", &shuffled, |c| c.run.max_files_per_rebuild = 4).await;
    assert_same(
        &outputs("chunked").await,
        &reference,
        "rebuilt 4 files at a time",
    );

    // Two workers taking alternate files at once, sharing the stores.
    let (a, b) = (runner("two", None).await, runner("two", None).await);
    let (odd, even): (Vec<_>, Vec<_>) = files.iter().enumerate().partition(|(k, _)| k % 2 == 1);
    futures::join!(drive(&a, odd), drive(&b, even));
    finish(a).await;
    finish(b).await;
    // The collection's links and extent come from whichever worker refreshed last: it
    // saw every item either way.
    let two = outputs("two").await;
    assert_eq!(dataset_item(&two), item);
    let names = |o: &[(String, Vec<u8>)]| o.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&two), names(&reference));
    for ((p, x), (_, y)) in two.iter().zip(&reference) {
        if p.starts_with("refs/") {
            assert!(x == y, "{p} differs");
        }
    }
}

async fn drive(r: &Runner, part: Vec<(usize, &String)>) {
    for (_, f) in part {
        let done = r.process(&Request::new(f.clone())).await;
        assert!(
            !matches!(done.outcome, Outcome::Failed(_)),
            "{f}: {:?}",
            done.outcome
        );
    }
    r.refresh().await.unwrap();
}

/// A static catalog in memory that is unreachable for its first `failures` writes.
struct Flaky {
    inner: StaticCatalog,
    failures: AtomicU32,
}

#[async_trait::async_trait]
impl CatalogSink for Flaky {
    fn url(&self) -> String {
        self.inner.url()
    }
    fn prepare_item(&self, item: &mut Value) {
        self.inner.prepare_item(item)
    }
    async fn upsert_items(&self, items: Vec<Value>) -> Result<Vec<ItemOutcome>, CatalogError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(CatalogError::Unavailable("catalog is down".into()));
        }
        self.inner.upsert_items(items).await
    }
    async fn get_item(&self, collection: &str, id: &str) -> Result<Option<Value>, CatalogError> {
        self.inner.get_item(collection, id).await
    }
    async fn delete_item(&self, collection: &str, id: &str) -> Result<(), CatalogError> {
        self.inner.delete_item(collection, id).await
    }
    async fn refresh(&self, collections: &[String]) -> Result<(), CatalogError> {
        self.inner.refresh(collections).await
    }
}

#[tokio::test]
async fn a_catalog_that_fails_twice_then_recovers_loses_nothing() {
    let files = series();
    let one = [files[0].clone()];
    let catalog = Location::parse("memory://flaky/catalog").unwrap();
    let sink = Arc::new(Flaky {
        inner: StaticCatalog::new(catalog),
        failures: AtomicU32::new(2),
    });
    let r = runner("flaky", Some(sink.clone())).await;
    let log_path = r.stages().config.output.failed.clone();
    let log = FailedLog::open(&log_path).unwrap();
    let summary = r
        .run_batch(vec![Request::new(one[0].clone())], &log, &NoProgress)
        .await
        .unwrap();
    assert_eq!((summary.ingested, summary.failed), (1, 0));
    assert_eq!(
        sink.failures.load(Ordering::SeqCst),
        0,
        "both failures were met"
    );
    assert!(
        !std::path::Path::new(&log_path).exists(),
        "nothing recorded as failed"
    );

    // Down for longer than the retries last: recorded as transient, with its attempts.
    sink.failures.store(10, Ordering::SeqCst);
    let done = r.process(&Request::new(files[1].clone())).await;
    assert_eq!(done.attempts, 3);
    match done.outcome {
        Outcome::Failed(f) => {
            assert!(f.is_transient(), "{f}");
            assert!(f.message.contains("catalog is down"), "{f}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn sources_that_are_not_files_of_this_job_fail_with_the_reason() {
    let r = runner("kinds", None).await;
    let dir = std::env::temp_dir().join(format!("zarrstac-kinds-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("v3")).unwrap();
    std::fs::write(
        dir.join("v3/zarr.json"),
        // A store whose root is an array: Zarr v3 stores are read, this one is refused.
        b"{\"zarr_format\": 3, \"node_type\": \"array\"}",
    )
    .unwrap();
    let done = r
        .process(&Request::new(dir.join("v3").to_string_lossy().into_owned()))
        .await;
    match done.outcome {
        Outcome::Failed(f) => {
            assert!(!f.is_transient());
            assert!(f.message.contains("root is an array"), "{f}");
            assert_eq!(done.attempts, 1, "a permanent failure is not retried");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn datasets_grow_from_stored_records_without_their_files() {
    // Copies of the series, so that files can be taken away.
    let dir = std::env::temp_dir().join(format!("zarrstac-gone-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<String> = series()
        .iter()
        .map(|f| {
            let to = dir.join(std::path::Path::new(f).file_name().unwrap());
            std::fs::copy(f, &to).unwrap();
            to.to_string_lossy().into_owned()
        })
        .collect();
    let (middle, last) = (files[5].clone(), files[12].clone());
    let first: Vec<String> = files
        .iter()
        .filter(|f| **f != middle && **f != last)
        .cloned()
        .collect();
    batch("gone", &first).await;
    for f in &first {
        std::fs::remove_file(f).unwrap();
    }
    // A file after the last one is appended; one in the middle recombines from the
    // records: neither reads the files that are gone.
    batch("gone", std::slice::from_ref(&last)).await;
    batch("gone", std::slice::from_ref(&middle)).await;
    let objects = outputs("gone").await;
    let item = dataset_item(&objects);
    assert_eq!(item["assets"].as_object().unwrap().len(), 14);
    assert_eq!(item["properties"]["start_datetime"], "2005-12-16T00:00:00Z");
    assert_eq!(item["properties"]["end_datetime"], "2299-12-16T00:00:00Z");
    // The same outputs as from all files at once (names aside: other source paths).
    batch("whole", &series()).await;
    let whole = dataset_item(&outputs("whole").await);
    assert_eq!(item["properties"], whole["properties"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn asset_documents_are_the_same_however_files_arrive() {
    // 13 files with at most 4 inline: the files become asset documents, 3 to a page.
    let small = |c: &mut PipelineConfig| {
        c.stac.max_item_assets = 4;
        c.catalog.asset_page_size = 3;
    };
    let files = series();
    batch_with("docs-batch", &files, small).await;
    let reference = outputs("docs-batch").await;
    let item = dataset_item(&reference);
    assert_eq!(
        item["assets"].as_object().unwrap().len(),
        1,
        "only the store inline"
    );
    let pages: Vec<&String> = reference
        .iter()
        .map(|o| &o.0)
        .filter(|p| p.contains("/assets/page-"))
        .collect();
    assert_eq!(pages.len(), 5, "13 documents in pages of 3: {pages:?}");
    // In time order (each a tail after the last) and out of order (recombined).
    for f in &files {
        batch_with("docs-in-order", std::slice::from_ref(f), small).await;
    }
    assert_same(&outputs("docs-in-order").await, &reference, "in time order");
    let mut shuffled = files.clone();
    shuffled.swap(1, 9);
    shuffled.swap(4, 11);
    for f in &shuffled {
        batch_with("docs-shuffled", std::slice::from_ref(f), small).await;
    }
    assert_same(&outputs("docs-shuffled").await, &reference, "out of order");
}
