//! pgstac written directly: items upserted in batches through pgstac's own functions,
//! over a pool of connections that replaces broken ones. The asset documents of items
//! with many files go to zarrstac's own table beside pgstac ([`crate::asset_table`]), in
//! the transaction that writes their item.

use std::collections::HashMap;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::Value;
use tokio_postgres::NoTls;

use crate::asset_table;
use crate::collection::CollectionExtent;
use crate::{AssetDocuments, CatalogError, CatalogSink, ItemOutcome, RetryPolicy, SinkConfig};

/// How the pgstac sink reaches its database.
#[derive(Debug, Clone)]
pub struct PgstacConfig {
    /// The connection URL (may hold a password: printed only through [`crate::redact`]).
    pub url: String,
    pub pool_size: usize,
    pub retry: RetryPolicy,
    pub missing_geometry: crate::MissingGeometry,
    /// Where `zarrstac serve` answers for this database: the base of the items'
    /// `rel: "asset"` links. `None`: items keep every asset inline.
    pub asset_api_url: Option<String>,
}

impl PgstacConfig {
    pub fn from_url(url: &str, sink: &SinkConfig) -> Result<Self, CatalogError> {
        Ok(PgstacConfig {
            url: url.to_string(),
            pool_size: sink.pool_size.max(1),
            retry: sink.retry.clone(),
            missing_geometry: sink.missing_geometry,
            asset_api_url: sink.asset_api_url.clone(),
        })
    }
}

/// A pgstac database as the catalog.
pub struct Pgstac {
    pool: Pool,
    shown_url: String,
    retry: RetryPolicy,
    missing_geometry: crate::MissingGeometry,
    asset_api_url: Option<String>,
    /// Asset documents waiting for their item: written in the transaction that upserts
    /// it, so that an item and its documents are never seen apart.
    staged: parking_lot::Mutex<HashMap<(String, String), StagedDocuments>>,
}

/// The asset documents of one item to write with it.
#[derive(Clone)]
struct StagedDocuments {
    /// (id, digest, document), in order.
    rows: Vec<(String, String, Value)>,
    /// Whether documents held beyond `rows` are to go (a whole list was sent).
    remove_others: bool,
}

/// A database failure, judged: connection trouble, contention and an unavailable
/// server are transient; everything the server refuses on content is not.
#[derive(Debug)]
struct DbFailure {
    transient: bool,
    message: String,
}

impl std::fmt::Display for DbFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl zarrstac_io::Retryable for DbFailure {
    fn is_transient(&self) -> bool {
        self.transient
    }
}

impl From<tokio_postgres::Error> for DbFailure {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => {
                let code = db.code().code();
                let transient =
                    ["08", "40", "53", "57"].iter().any(|c| code.starts_with(c)) || code == "55P03";
                let mut message = format!("{} ({code})", db.message());
                if let Some(d) = db.detail() {
                    message.push_str(&format!(": {d}"));
                }
                DbFailure { transient, message }
            }
            None => DbFailure {
                transient: true,
                message: crate::stac_api::error_chain(&e),
            },
        }
    }
}

impl From<deadpool_postgres::PoolError> for DbFailure {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => DbFailure {
                transient: true,
                message: crate::stac_api::error_chain(&other),
            },
        }
    }
}

/// A pool of connections to a pgstac database, its sessions set by `options` (pgstac's
/// functions call each other unqualified: the search path must name `pgstac`) unless the
/// URL sets options of its own.
pub fn connection_pool(url: &str, size: usize, options: &str) -> Result<Pool, CatalogError> {
    let shown_url = crate::redact(url);
    let mut pg: tokio_postgres::Config =
        url.parse()
            .map_err(|e: tokio_postgres::Error| CatalogError::Config {
                url: shown_url.clone(),
                reason: e.to_string(),
            })?;
    if pg.get_options().is_none() {
        pg.options(options);
    }
    if pg.get_application_name().is_none() {
        pg.application_name("zarrstac");
    }
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| CatalogError::Config {
            url: shown_url,
            reason: e.to_string(),
        })
}

impl Pgstac {
    fn config_missing_geometry(&self) -> crate::MissingGeometry {
        self.missing_geometry
    }

    /// Opens the pool and checks that the database has pgstac.
    pub async fn connect(config: PgstacConfig) -> Result<Self, CatalogError> {
        let shown_url = crate::redact(&config.url);
        let pool = connection_pool(
            &config.url,
            config.pool_size,
            "-c search_path=pgstac,public",
        )?;
        let sink = Pgstac {
            pool,
            shown_url,
            retry: config.retry,
            missing_geometry: config.missing_geometry,
            asset_api_url: config
                .asset_api_url
                .map(|u| u.trim_end_matches('/').to_string()),
            staged: Default::default(),
        };
        let version: String = sink
            .with_retry("checking pgstac", |client| async move {
                let row = client.query_one("SELECT pgstac.get_version()", &[]).await?;
                Ok(row.get(0))
            })
            .await
            .map_err(|e| match e {
                CatalogError::Refused(m) => CatalogError::Config {
                    url: sink.shown_url.clone(),
                    reason: format!("no usable pgstac schema ({m}); run `pypgstac migrate` on it"),
                },
                other => other,
            })?;
        tracing::info!("pgstac {version} at {}", sink.shown_url);
        if sink.asset_api_url.is_some() {
            sink.with_retry("migrating the asset table", |mut client| async move {
                crate::asset_table::migrate(&mut client).await?;
                Ok(())
            })
            .await?;
        }
        Ok(sink)
    }

    /// Runs `op` on a pooled connection, retrying transient failures per the policy.
    async fn with_retry<T, F, Fut>(&self, what: &str, op: F) -> Result<T, CatalogError>
    where
        F: Fn(deadpool_postgres::Object) -> Fut,
        Fut: std::future::Future<Output = Result<T, DbFailure>>,
    {
        let what = format!("{}: {what}", self.shown_url);
        let op = &op;
        let attempt = |_| async move {
            match self.pool.get().await {
                Ok(client) => op(client).await,
                Err(e) => Err(DbFailure::from(e)),
            }
        };
        match self.retry.run(&what, attempt).await {
            Ok((v, _)) => Ok(v),
            Err((f, _)) if !f.transient => {
                Err(CatalogError::Refused(format!("{what}: {}", f.message)))
            }
            Err((f, attempts)) => Err(CatalogError::Unavailable(format!(
                "{what}: {} (after {attempts} attempts)",
                f.message
            ))),
        }
    }

    /// Creates a collection from its first items unless it exists.
    async fn ensure_collection(&self, id: &str, items: &[&Value]) -> Result<(), CatalogError> {
        let mut extent = CollectionExtent::default();
        items.iter().for_each(|i| extent.add_item(i));
        let doc = extent.to_collection(id, vec![]);
        self.with_retry(&format!("creating collection {id}"), |client| {
            let doc = doc.clone();
            async move {
                let exists = client
                    .query_opt("SELECT 1 FROM pgstac.collections WHERE id = $1", &[&id])
                    .await?
                    .is_some();
                if !exists {
                    match client
                        .execute("SELECT pgstac.create_collection($1::jsonb)", &[&doc])
                        .await
                    {
                        Ok(_) => {}
                        // Another worker created it first.
                        Err(e)
                            if e.code()
                                == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(())
            }
        })
        .await
    }

    /// Grows a collection's extent (computed by pgstac over all its items) and summaries
    /// (merged with the new items), in one transaction so concurrent workers do not lose
    /// each other's values.
    async fn update_collection(&self, id: &str, items: &[&Value]) -> Result<(), CatalogError> {
        let mut added = CollectionExtent::default();
        items.iter().for_each(|i| added.add_item(i));
        self.with_retry(&format!("updating collection {id}"), |mut client| {
            let added = added.clone();
            async move {
                let tx = client.transaction().await?;
                lock_collections(&tx, &[&id.to_string()]).await?;
                let Some(row) = tx
                    .query_opt(
                        "SELECT content FROM pgstac.collections WHERE id = $1 FOR UPDATE",
                        &[&id],
                    )
                    .await?
                else {
                    return Ok(());
                };
                let current: Value = row.get(0);
                let computed: Option<Value> = tx
                    .query_one("SELECT pgstac.collection_extent($1, true)", &[&id])
                    .await?
                    .get(0);
                let mut extent = added;
                extent.add_collection(&current);
                let mut doc = current.clone();
                let fresh = extent.to_collection(id, vec![]);
                doc["extent"] = computed.unwrap_or_else(|| fresh["extent"].clone());
                if !fresh["summaries"].is_null() {
                    doc["summaries"] = fresh["summaries"].clone();
                }
                if doc != current {
                    tx.execute("SELECT pgstac.update_collection($1::jsonb)", &[&doc])
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        })
        .await
    }
}

impl Pgstac {
    /// The staged documents of these items.
    fn staged_for<'a>(
        &self,
        items: impl Iterator<Item = &'a Value>,
    ) -> Vec<((String, String), StagedDocuments)> {
        let staged = self.staged.lock();
        if staged.is_empty() {
            return Vec::new();
        }
        items
            .filter_map(|i| {
                let key = (
                    i["collection"].as_str()?.to_string(),
                    i["id"].as_str()?.to_string(),
                );
                let docs = staged.get(&key)?.clone();
                Some((key, docs))
            })
            .collect()
    }

    /// Refreshes the planner's statistics of the asset table after a large write, so
    /// that the first queries after a backfill do not plan on an empty table's numbers
    /// (autovacuum would do it only a minute or so later).
    async fn analyze_after(&self, written: &[((String, String), StagedDocuments)]) {
        let rows: usize = written.iter().map(|(_, d)| d.rows.len()).sum();
        if rows < ANALYZE_AFTER_ROWS {
            return;
        }
        let done = self
            .with_retry("analyzing the asset table", |client| async move {
                client
                    .batch_execute(&format!("ANALYZE {}", asset_table::TABLE))
                    .await?;
                Ok(())
            })
            .await;
        if let Err(e) = done {
            tracing::warn!("{e}");
        }
    }

    /// Forgets documents once written (unless newer ones were staged meanwhile).
    fn unstage(&self, written: &[((String, String), StagedDocuments)]) {
        let mut staged = self.staged.lock();
        for (key, docs) in written {
            if staged.get(key).is_some_and(|now| {
                now.rows.len() == docs.rows.len()
                    && now.rows.iter().zip(&docs.rows).all(|(a, b)| a.1 == b.1)
            }) {
                staged.remove(key);
            }
        }
    }
}

/// Asset rows written at once beyond which the table's statistics are refreshed.
const ANALYZE_AFTER_ROWS: usize = 10_000;

/// Writes an item's staged documents in the item's transaction.
async fn write_staged(
    tx: &deadpool_postgres::Transaction<'_>,
    (collection, item): &(String, String),
    staged: &StagedDocuments,
) -> Result<(), tokio_postgres::Error> {
    asset_table::upsert(tx, collection, item, &staged.rows).await?;
    if staged.remove_others {
        let keep: Vec<&str> = staged.rows.iter().map(|r| r.0.as_str()).collect();
        asset_table::delete_others(tx, collection, item, &keep).await?;
    }
    Ok(())
}

/// Serializes writers of the same collections (in every process) for the transaction.
/// pgstac adjusts a collection's partition, its constraints and statistics inside each
/// load; loads into one collection take turns rather than contend on that DDL. Locks are
/// taken in name order, so two writers cannot deadlock.
async fn lock_collections(
    tx: &deadpool_postgres::Transaction<'_>,
    collections: &[&String],
) -> Result<(), tokio_postgres::Error> {
    let mut sorted: Vec<&String> = collections.to_vec();
    sorted.sort();
    for c in sorted {
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('zarrstac-collection:' || $1, 0))",
            &[c],
        )
        .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl CatalogSink for Pgstac {
    fn url(&self) -> String {
        self.shown_url.clone()
    }

    fn prepare_item(&self, item: &mut Value) {
        crate::prepare_for_database(item, self.config_missing_geometry());
    }

    async fn upsert_items(&self, items: Vec<Value>) -> Result<Vec<ItemOutcome>, CatalogError> {
        let (mut outcomes, by_collection) = crate::sort_for_database(&items);
        for (collection, idx) in &by_collection {
            let batch: Vec<&Value> = idx.iter().map(|&k| &items[k]).collect();
            self.ensure_collection(collection, &batch).await?;
        }
        let all: Vec<usize> = by_collection.values().flatten().copied().collect();
        let array = Value::Array(all.iter().map(|&k| items[k].clone()).collect());
        let staged = self.staged_for(all.iter().map(|&k| &items[k]));
        let bulk = self
            .with_retry("upserting items", |mut client| {
                let array = &array;
                let staged = &staged;
                let collections: Vec<&String> = by_collection.keys().collect();
                async move {
                    let tx = client.transaction().await?;
                    lock_collections(&tx, &collections).await?;
                    tx.execute("SELECT pgstac.upsert_items($1::jsonb)", &[array])
                        .await?;
                    for (key, staged) in staged {
                        write_staged(&tx, key, staged).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }
            })
            .await;
        match bulk {
            Ok(()) => {
                all.iter().for_each(|&k| outcomes[k] = ItemOutcome::Written);
                self.unstage(&staged);
                self.analyze_after(&staged).await;
            }
            Err(e) if e.is_transient() => return Err(e),
            // The batch failed as a whole on some item's content: find which, one by one.
            Err(e) => {
                tracing::info!(
                    "batch of {} items refused ({e}); upserting one by one",
                    all.len()
                );
                for &k in &all {
                    let item = &items[k];
                    let staged = self.staged_for(std::iter::once(item));
                    let one = self
                        .with_retry("upserting an item", |mut client| {
                            let staged = &staged;
                            async move {
                                let tx = client.transaction().await?;
                                let collection =
                                    item["collection"].as_str().unwrap_or_default().to_string();
                                lock_collections(&tx, &[&collection]).await?;
                                tx.execute("SELECT pgstac.upsert_item($1::jsonb)", &[item])
                                    .await?;
                                for (key, docs) in staged {
                                    write_staged(&tx, key, docs).await?;
                                }
                                tx.commit().await?;
                                Ok(())
                            }
                        })
                        .await;
                    outcomes[k] = match one {
                        Ok(()) => {
                            self.unstage(&staged);
                            ItemOutcome::Written
                        }
                        Err(e) if e.is_transient() => return Err(e),
                        Err(e) => ItemOutcome::Rejected(e.to_string()),
                    };
                }
            }
        }
        for (collection, idx) in &by_collection {
            let written: Vec<&Value> = idx
                .iter()
                .filter(|&&k| outcomes[k] == ItemOutcome::Written)
                .map(|&k| &items[k])
                .collect();
            if !written.is_empty() {
                self.update_collection(collection, &written).await?;
            }
        }
        Ok(outcomes)
    }

    async fn get_item(&self, collection: &str, id: &str) -> Result<Option<Value>, CatalogError> {
        self.with_retry(&format!("reading item {id}"), |client| async move {
            let row = client
                .query_opt(
                    "SELECT pgstac.get_item($1, $2) WHERE EXISTS (SELECT 1 FROM pgstac.items WHERE id = $1 AND collection = $2)",
                    &[&id, &collection],
                )
                .await?;
            Ok(row.and_then(|r| r.get::<_, Option<Value>>(0)))
        })
        .await
    }

    async fn delete_item(&self, collection: &str, id: &str) -> Result<(), CatalogError> {
        let with_assets = self.asset_api_url.is_some();
        self.with_retry(&format!("deleting item {id}"), |mut client| async move {
            let tx = client.transaction().await?;
            tx.execute(
                "DELETE FROM pgstac.items WHERE collection = $1 AND id = $2",
                &[&collection, &id],
            )
            .await?;
            if with_assets {
                asset_table::delete_others(&tx, collection, id, &[]).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    fn holds_asset_documents(&self) -> bool {
        self.asset_api_url.is_some()
    }

    /// Compares the documents with those held (ids and digests only) and stages what
    /// differs, to be written with the item; the link points at `zarrstac serve`.
    async fn put_asset_documents(
        &self,
        collection: &str,
        item_id: &str,
        documents: AssetDocuments,
    ) -> Result<Option<(Value, bool)>, CatalogError> {
        let Some(api) = &self.asset_api_url else {
            return Err(CatalogError::Config {
                url: self.url(),
                reason: "no serve.public_url: this catalog keeps every asset inline".into(),
            });
        };
        let total = documents.len();
        let unchanged = documents.unchanged;
        let rows: Vec<(String, String, Value)> = documents
            .tail
            .into_iter()
            .map(|mut d| {
                // The service gives each document its links.
                if let Some(o) = d.as_object_mut() {
                    o.remove("links");
                }
                let id = d["id"].as_str().unwrap_or_default().to_string();
                (id, asset_table::digest(&d), d)
            })
            .collect();
        let (held, present, same) = self
            .with_retry(
                &format!("comparing asset documents of {item_id}"),
                |client| {
                    let rows = &rows;
                    async move {
                        let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
                        let digests: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
                        Ok(
                            asset_table::compare(&client, collection, item_id, &ids, &digests)
                                .await?,
                        )
                    }
                },
            )
            .await?;
        let stale = held - present - unchanged as i64;
        // Only a tail was sent but the table does not hold the documents before it.
        if unchanged > 0 && stale != 0 {
            return Ok(None);
        }
        let changed = same < rows.len() as i64 || stale > 0;
        let key = (collection.to_string(), item_id.to_string());
        if changed {
            self.staged.lock().insert(
                key,
                StagedDocuments {
                    rows,
                    remove_others: unchanged == 0,
                },
            );
        } else {
            self.staged.lock().remove(&key);
        }
        let link = serde_json::json!({
            "rel": "asset",
            "href": format!(
                "{api}/collections/{}/items/{}/assets",
                crate::path_segment(collection),
                crate::path_segment(item_id)
            ),
            "type": "application/geo+json",
            "title": format!("{total} assets, paged and filtered by time"),
        });
        Ok(Some((link, changed)))
    }

    async fn refresh(&self, _collections: &[String]) -> Result<(), CatalogError> {
        // Extents and summaries grow with every batch.
        Ok(())
    }
}
