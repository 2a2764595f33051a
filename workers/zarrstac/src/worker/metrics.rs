//! Prometheus metrics and the health endpoint of a worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: String,
}

/// Everything a worker reports.
pub struct Metrics {
    registry: Registry,
    pub messages: Family<OutcomeLabel, Counter>,
    pub retries: Counter,
    pub dead_lettered: Counter,
    /// Messages dead-lettered because their workers stopped while processing them.
    pub crashed: Counter,
    pub lag: Family<PartitionLabel, Gauge>,
    pub stage_seconds: Family<StageLabel, Histogram>,
    pub in_flight: Gauge,
    /// Source reads counted by the io layer: bytes, requests, round trips (waves of requests).
    source_reads: [IoCounter; 3],
    /// Unix seconds of the consumer loop's last turn: /healthz fails when it stalls.
    pub heartbeat: AtomicI64,
}

/// A counter of the io layer's process-wide totals, brought up to date on each scrape.
struct IoCounter {
    counter: Counter,
    seen: AtomicU64,
    total: fn() -> u64,
}

impl IoCounter {
    fn catch_up(&self) {
        let total = (self.total)();
        let seen = self.seen.swap(total, Ordering::Relaxed);
        self.counter.inc_by(total.saturating_sub(seen));
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("zarrstac");
        let messages = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "messages",
            "Messages finished, by outcome (ingested, unchanged, ignored, dead_lettered)",
            messages.clone(),
        );
        let retries = Counter::default();
        registry.register("retries", "Retries of transient failures", retries.clone());
        let dead_lettered = Counter::default();
        registry.register(
            "dlq",
            "Messages written to the dead-letter topic",
            dead_lettered.clone(),
        );
        let crashed = Counter::default();
        registry.register(
            "crashed",
            "Messages dead-lettered as crashed: started worker.max_crashes times, never finished",
            crashed.clone(),
        );
        let lag = Family::<PartitionLabel, Gauge>::default();
        registry.register(
            "consumer_lag",
            "Messages behind the end of each assigned partition",
            lag.clone(),
        );
        let stage_seconds = Family::<StageLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "stage_seconds",
            "Time spent per stage (parse, ingest, dlq, message)",
            stage_seconds.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("in_flight", "Messages being processed", in_flight.clone());
        let source_reads = [
            (
                "source_bytes_read",
                "Bytes read from sources",
                zarrstac_io::total_bytes_read as fn() -> u64,
            ),
            (
                "source_requests",
                "Range requests made to sources",
                zarrstac_io::total_requests,
            ),
            (
                "source_round_trips",
                "Round trips to sources: waves of concurrent range requests",
                zarrstac_io::total_round_trips,
            ),
        ]
        .map(|(name, help, total)| {
            let io = IoCounter {
                counter: Counter::default(),
                seen: AtomicU64::new(0),
                total,
            };
            registry.register(name, help, io.counter.clone());
            io
        });
        Arc::new(Metrics {
            registry,
            messages,
            retries,
            dead_lettered,
            crashed,
            lag,
            stage_seconds,
            in_flight,
            source_reads,
            heartbeat: AtomicI64::new(chrono::Utc::now().timestamp()),
        })
    }

    pub fn outcome(&self, outcome: &str) {
        self.messages
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn observe(&self, stage: &str, seconds: f64) {
        self.stage_seconds
            .get_or_create(&StageLabel {
                stage: stage.into(),
            })
            .observe(seconds);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        for io in &self.source_reads {
            io.catch_up();
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn beat(&self) {
        self.heartbeat
            .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
    }

    fn healthy(&self) -> bool {
        chrono::Utc::now().timestamp() - self.heartbeat.load(Ordering::Relaxed) < 60
    }
}

/// Serves GET /metrics and GET /healthz until the process ends.
pub async fn serve(addr: &str, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("metrics address {addr}: {e}"))?;
    let m1 = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m1.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let m = metrics.clone();
                async move {
                    if m.healthy() {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "consumer loop stalled")
                    }
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server: {e}");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, name: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in\n{text}"))
    }

    #[tokio::test]
    async fn source_reads_are_exposed_and_follow_the_io_totals() {
        use object_store::ObjectStoreExt;
        let metrics = Metrics::new();
        let before = metrics.render();
        let names = [
            "zarrstac_source_bytes_read_total",
            "zarrstac_source_requests_total",
            "zarrstac_source_round_trips_total",
        ];
        let start: Vec<u64> = names.iter().map(|n| value(&before, n)).collect();
        let location = zarrstac_io::Location::parse("memory://metrics-test/object.bin").unwrap();
        location
            .store
            .put(&location.path, vec![7u8; 3 * 1024 * 1024].into())
            .await
            .unwrap();
        let reader = zarrstac_io::RangeReader::open(location).await.unwrap();
        reader
            .read_many(&[2_000_000..2_000_010, 3_000_000..3_000_010])
            .await
            .unwrap();
        let after = metrics.render();
        let grown: Vec<u64> = names
            .iter()
            .zip(&start)
            .map(|(n, s)| value(&after, n) - s)
            .collect();
        // Other tests of this process read too: the counters grow by at least this reader's.
        assert!(grown[0] >= reader.stats().bytes(), "{grown:?}");
        assert!(grown[1] >= 3 && grown[2] >= 2, "{grown:?}");
    }
}
