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
    bytes_read: Counter,
    bytes_seen: AtomicU64,
    /// Unix seconds of the consumer loop's last turn: /healthz fails when it stalls.
    pub heartbeat: AtomicI64,
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
        let bytes_read = Counter::default();
        registry.register(
            "source_bytes_read",
            "Bytes read from sources",
            bytes_read.clone(),
        );
        Arc::new(Metrics {
            registry,
            messages,
            retries,
            dead_lettered,
            crashed,
            lag,
            stage_seconds,
            in_flight,
            bytes_read,
            bytes_seen: AtomicU64::new(0),
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
        // Bytes are counted by the io layer; bring the counter up to date on each scrape.
        let total = zarrstac_io::total_bytes_read();
        let seen = self.bytes_seen.swap(total, Ordering::Relaxed);
        self.bytes_read.inc_by(total.saturating_sub(seen));
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
