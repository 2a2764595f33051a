//! `pipeline.toml`: the whole pipeline in one file, every key overridable by
//! `ZARRSTAC_<SECTION>__<KEY>` environment variables.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PipelineConfig {
    pub output: OutputConfig,
    /// How items are sent to the catalog named by `output.catalog`.
    pub catalog: zarrstac_catalog::SinkConfig,
    pub refs: RefsConfig,
    pub stac: StacConfig,
    pub datasets: DatasetsConfig,
    pub run: RunConfig,
    /// The queue-driven worker, backfill and replay.
    pub worker: WorkerConfig,
    /// `zarrstac serve`, the asset API; its `public_url` is where the items' asset links
    /// point.
    pub serve: zarrstac_asset_api::ServeConfig,
}

/// `zarrstac worker`, `backfill` and `replay` on Kafka.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// Kafka bootstrap servers, comma-separated.
    pub brokers: String,
    /// Topic of ingestion requests and object-store events.
    pub topic: String,
    /// Dead-letter topic.
    pub dlq_topic: String,
    pub group_id: String,
    /// A stable name of this worker within its group (Kafka static membership): a worker
    /// restarted under the same name takes its partitions back at once instead of waiting
    /// for the group to notice the old one is gone. Unset: dynamic membership.
    pub instance_id: Option<String>,
    /// The partitions of `topic` this worker reads, assigned by hand: the group's
    /// coordinator then hands out nothing, and offsets are still committed under
    /// `group_id`. Each partition must be given to exactly one worker. For brokers whose
    /// group coordination cannot be relied on (tansu 0.6 after a restart, see
    /// deploy/README.md). Empty: the group assigns partitions.
    pub assigned_partitions: Vec<i32>,
    /// Partitions of topics the worker creates when they are missing.
    pub partitions: i32,
    /// Address of /metrics and /healthz.
    pub metrics_addr: String,
    /// Seconds in-flight messages may take to finish after SIGTERM/SIGINT.
    pub shutdown_grace_s: u64,
    /// Messages whose files wait for their dataset's rebuild at once, beyond those the
    /// lanes are working on: the more, the more files one rebuild takes in.
    pub max_waiting: usize,
    /// Backfills run by the worker on a schedule.
    pub schedule: Vec<ScheduledBackfill>,
    /// A message whose processing the worker did not survive this many times (an abort,
    /// an out-of-memory kill) is dead-lettered as `crashed` when it comes again, instead
    /// of taking the next worker down too. 0 turns the guard off.
    pub max_crashes: u32,
    /// Where workers record the messages they have started and not finished (a path or
    /// URL every worker of the group reaches). Unset: `<output.refs_root>/.in-flight`.
    pub in_flight: Option<String>,
    /// Producers (dead letters, replay, backfill) send every record in a batch of its
    /// own. Needed on brokers that serve nothing to a consumer resuming inside a batch
    /// (tansu 0.6, see deploy/README.md); costs throughput elsewhere.
    pub single_record_batches: bool,
    /// librdkafka properties for every client of the broker (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `ssl.ca.location`, `debug` ...), set after
    /// zarrstac's own. The SASL password is better given as `ZARRSTAC_KAFKA_PASSWORD`.
    pub kafka: std::collections::BTreeMap<String, String>,
}

/// The environment variable holding the broker's SASL password (`sasl.password`).
pub const KAFKA_PASSWORD_ENV: &str = "ZARRSTAC_KAFKA_PASSWORD";

impl WorkerConfig {
    /// Settings of a client of the broker: its address, then `kafka`.
    pub fn kafka_client(&self) -> rdkafka::ClientConfig {
        let mut c = zarrstac_queue::kafka::client_config(&self.brokers);
        for (k, v) in &self.kafka {
            c.set(k, v);
        }
        if let Ok(password) = std::env::var(KAFKA_PASSWORD_ENV) {
            c.set("sasl.password", password);
        }
        c
    }

    /// Settings of a producer of ours (dead letters, replay, backfill).
    pub fn kafka_producer(&self) -> rdkafka::ClientConfig {
        zarrstac_queue::kafka::producer_config(self.kafka_client(), self.single_record_batches)
    }
}

/// A backfill `worker` runs periodically.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduledBackfill {
    /// Cron expression (5 fields, UTC), e.g. "0 3 * * *".
    pub cron: String,
    /// Prefix listed.
    pub prefix: String,
    /// Glob the object URLs must match.
    #[serde(default, rename = "match")]
    pub glob: Option<String>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "zarrstac-ingest".into(),
            dlq_topic: "zarrstac-ingest-dlq".into(),
            group_id: "zarrstac".into(),
            instance_id: None,
            assigned_partitions: Vec::new(),
            partitions: 4,
            metrics_addr: "127.0.0.1:9100".into(),
            shutdown_grace_s: 30,
            max_waiting: 256,
            schedule: Vec::new(),
            max_crashes: 2,
            in_flight: None,
            single_record_batches: false,
            kafka: Default::default(),
        }
    }
}

/// How files are grouped into multi-file datasets, and what their items state that the
/// files do not.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasetsConfig {
    /// For files whose attributes name no CMIP dataset: the tail of their path as
    /// `/`-separated literal parts and `{facet}` placeholders (`{filename}`, `{version}`
    /// are not part of the id), e.g. a CORDEX layout. Unset: such files stay single items.
    pub path_template: Option<String>,
    /// The PIDs of CMIP6 datasets: a path or URL of a CSV file (`dataset_id,pid` lines,
    /// an optional third column `retracted` true/false) or a JSON object (dataset id to
    /// PID, or to `{"pid": ..., "retracted": ...}`), keyed by the dataset's instance id
    /// with its version (`CMIP6.<...>.v20190101`). A request's `dataset_pid` wins.
    pub pid_table: Option<String>,
    /// The `cite-as` link of CMIP6 dataset items; `{instance_id}` stands for the item id.
    pub cite_as_template: String,
    /// The data node serving the files, named on each asset (`alternate:name`).
    pub data_node: Option<String>,
}

impl Default for DatasetsConfig {
    fn default() -> Self {
        DatasetsConfig {
            path_template: None,
            pid_table: None,
            cite_as_template: zarrstac_stac::cmip6::CITE_AS_TEMPLATE.into(),
            data_node: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OutputConfig {
    pub catalog: String,
    pub refs_root: String,
    pub failed: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RefsConfig {
    pub inline_threshold: u64,
    pub materialize_limit: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StacConfig {
    pub store_style: String,
    pub collection: Option<String>,
    /// Asset documents per page in a static catalog.
    pub asset_page_size: usize,
    /// A dataset item with more files than this keeps only its summary assets inline
    /// (the combined store); its files become asset documents linked with rel "asset",
    /// where the catalog keeps them (the static catalog; other catalogs keep every asset
    /// inline for now).
    pub max_item_assets: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    /// Sources (or messages) processed at once.
    pub concurrency: usize,
    /// Retries of a source whose failure is transient (an unreachable store or catalog),
    /// in every job, before it is recorded as failed (or dead-lettered).
    pub retry: zarrstac_io::RetryPolicy,
    /// Files of one dataset a batch run (ingest, backfill --inline, replay) holds before
    /// rebuilding the dataset with them: what bounds its memory on datasets of 100,000
    /// files. The result is the same however the files are grouped.
    pub max_files_per_rebuild: usize,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            catalog: "out/catalog".into(),
            refs_root: "out/refs".into(),
            failed: "out/failed.jsonl".into(),
        }
    }
}

impl Default for RefsConfig {
    fn default() -> Self {
        RefsConfig {
            inline_threshold: 500,
            materialize_limit: 4 * 1024 * 1024,
        }
    }
}

impl Default for StacConfig {
    fn default() -> Self {
        StacConfig {
            store_style: "kerchunk".into(),
            collection: None,
            asset_page_size: zarrstac_catalog::DEFAULT_ASSET_PAGE_SIZE,
            max_item_assets: 100,
        }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            concurrency: 4,
            retry: zarrstac_io::RetryPolicy {
                attempts: 3,
                initial_backoff_ms: 500,
                max_backoff_ms: 10_000,
            },
            max_files_per_rebuild: 10_000,
        }
    }
}

impl PipelineConfig {
    /// Command-line choices of broker and topics over the file and environment.
    pub fn set_queue(
        &mut self,
        brokers: &Option<String>,
        topic: &Option<String>,
        dlq_topic: &Option<String>,
    ) {
        if let Some(b) = brokers {
            self.worker.brokers = b.clone();
        }
        if let Some(t) = topic {
            self.worker.topic = t.clone();
        }
        if let Some(t) = dlq_topic {
            self.worker.dlq_topic = t.clone();
        }
    }

    /// Defaults, then `path` (when it exists, or must exist when named explicitly), then
    /// the environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(PipelineConfig::default()));
        match path {
            Some(p) if !p.exists() => anyhow::bail!("config file {} does not exist", p.display()),
            Some(p) => figment = figment.merge(Toml::file(p)),
            None if Path::new("pipeline.toml").exists() => {
                figment = figment.merge(Toml::file("pipeline.toml"))
            }
            None => {}
        }
        let mut config: PipelineConfig = figment
            .merge(Env::prefixed("ZARRSTAC_").split("__"))
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        config.catalog.asset_page_size = config.stac.asset_page_size;
        let public = config.serve.public_url.trim();
        config.catalog.asset_api_url = (!public.is_empty()).then(|| public.to_string());
        if zarrstac_stac::StoreStyle::parse(&config.stac.store_style).is_none() {
            anyhow::bail!(
                "configuration: stac.store_style must be \"kerchunk\" or \"virtualizarr\", not {:?}",
                config.stac.store_style
            );
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // figment's Jail fixes the closure's error type.
    #[allow(clippy::result_large_err)]
    #[test]
    fn the_repository_file_matches_the_defaults_and_env_overrides_keys() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipeline.toml");
        let from_file = PipelineConfig::load(Some(&file)).unwrap();
        assert_eq!(from_file.output.catalog, "out/catalog");
        assert_eq!(from_file.refs.inline_threshold, 500);
        let serve = zarrstac_asset_api::ServeConfig::default();
        assert_eq!(
            (from_file.serve.addr.as_str(), from_file.serve.max_limit),
            (serve.addr.as_str(), serve.max_limit)
        );
        assert_eq!(
            from_file.catalog.asset_api_url.as_deref(),
            Some(from_file.serve.public_url.as_str())
        );
        figment::Jail::expect_with(|jail| {
            jail.set_env("ZARRSTAC_OUTPUT__CATALOG", "s3://bucket/stac");
            jail.set_env("ZARRSTAC_RUN__CONCURRENCY", "9");
            let c = PipelineConfig::load(Some(&file)).map_err(|e| e.to_string())?;
            assert_eq!(c.output.catalog, "s3://bucket/stac");
            assert_eq!(c.run.concurrency, 9);
            assert!(c.worker.assigned_partitions.is_empty());
            jail.set_env("ZARRSTAC_WORKER__ASSIGNED_PARTITIONS", "[1, 4]");
            let c = PipelineConfig::load(Some(&file)).map_err(|e| e.to_string())?;
            assert_eq!(c.worker.assigned_partitions, [1, 4]);
            Ok(())
        });
    }

    #[allow(clippy::result_large_err)]
    #[test]
    fn librdkafka_settings_reach_every_client_and_the_password_comes_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "kafka.toml",
                "[worker]\nsingle_record_batches = true\n[worker.kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n",
            )?;
            jail.set_env(KAFKA_PASSWORD_ENV, "s3cret");
            let c =
                PipelineConfig::load(Some(Path::new("kafka.toml"))).map_err(|e| e.to_string())?;
            let client = c.worker.kafka_client();
            assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
            assert_eq!(client.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
            assert_eq!(client.get("sasl.password"), Some("s3cret"));
            let producer = c.worker.kafka_producer();
            assert_eq!(producer.get("batch.num.messages"), Some("1"));
            assert_eq!(producer.get("security.protocol"), Some("SASL_SSL"));
            Ok(())
        });
    }
}
