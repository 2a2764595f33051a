//! A STAC API with the Transactions extension as the catalog (stac-fastapi-pgstac,
//! stac-fastapi-elasticsearch, stac-server, ...).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use crate::collection::CollectionExtent;
use crate::{CatalogError, CatalogSink, ItemOutcome, RetryPolicy, SinkConfig};

/// How the STAC API sink reaches its server.
#[derive(Debug, Clone)]
pub struct StacApiConfig {
    /// Root of the API, without a trailing slash or credentials.
    pub base: String,
    pub auth: Option<Auth>,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub missing_geometry: crate::MissingGeometry,
}

/// Credentials, from the environment or the URL; never printed.
#[derive(Clone)]
pub enum Auth {
    Bearer(String),
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::Bearer(_) => "Bearer(***)",
            Auth::Basic { .. } => "Basic(***)",
        })
    }
}

/// Environment variables that carry the API's credentials.
pub const TOKEN_ENV: &str = "ZARRSTAC_CATALOG_TOKEN";
pub const USER_ENV: &str = "ZARRSTAC_CATALOG_USER";
pub const PASSWORD_ENV: &str = "ZARRSTAC_CATALOG_PASSWORD";

impl StacApiConfig {
    /// From a catalog URL: credentials come from `ZARRSTAC_CATALOG_TOKEN` (bearer),
    /// `ZARRSTAC_CATALOG_USER`/`_PASSWORD` (basic) or the URL's user info (basic).
    pub fn from_url(url: &str, sink: &SinkConfig) -> Result<Self, CatalogError> {
        let mut parsed = url::Url::parse(url).map_err(|e| CatalogError::Config {
            url: crate::redact(url),
            reason: e.to_string(),
        })?;
        let mut auth = None;
        if !parsed.username().is_empty() {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            auth = Some(Auth::Basic {
                user: decode(parsed.username()),
                password: decode(parsed.password().unwrap_or_default()),
            });
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
        }
        if let Ok(token) = std::env::var(TOKEN_ENV)
            && !token.is_empty()
        {
            auth = Some(Auth::Bearer(token));
        } else if let Ok(user) = std::env::var(USER_ENV) {
            auth = Some(Auth::Basic {
                user,
                password: std::env::var(PASSWORD_ENV).unwrap_or_default(),
            });
        }
        Ok(StacApiConfig {
            base: parsed.as_str().trim_end_matches('/').to_string(),
            auth,
            retry: sink.retry.clone(),
            timeout: Duration::from_secs(sink.request_timeout_s.max(1)),
            missing_geometry: sink.missing_geometry,
        })
    }
}

/// A STAC API sink.
pub struct StacApi {
    config: StacApiConfig,
    client: reqwest::Client,
    /// Whether the server takes `bulk_items` (unknown until the first batch).
    bulk_unsupported: AtomicBool,
    /// Collections known to exist.
    known: tokio::sync::Mutex<HashMap<String, ()>>,
}

/// What a request came back with, once transient failures are out of the way.
struct Answer {
    status: StatusCode,
    body: Value,
    text: String,
}

impl Answer {
    /// The server's own reason: `description`/`detail`/`message` of a JSON error body, or
    /// the start of the body.
    fn reason(&self) -> String {
        let from_json =
            ["description", "detail", "message"]
                .iter()
                .find_map(|k| match &self.body[*k] {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                });
        let text = from_json.unwrap_or_else(|| self.text.chars().take(500).collect());
        format!("HTTP {}: {text}", self.status.as_u16())
    }
}

/// A request the server did not answer usefully: unreachable, 5xx or 429.
struct Unanswered {
    message: String,
    hint: Option<Duration>,
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl zarrstac_io::Retryable for Unanswered {
    fn is_transient(&self) -> bool {
        true
    }
    fn retry_after(&self) -> Option<Duration> {
        self.hint
    }
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

impl StacApi {
    fn config_missing_geometry(&self) -> crate::MissingGeometry {
        self.config.missing_geometry
    }

    pub fn new(config: StacApiConfig) -> Result<Self, CatalogError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("zarrstac/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CatalogError::Config {
                url: config.base.clone(),
                reason: e.to_string(),
            })?;
        Ok(StacApi {
            config,
            client,
            bulk_unsupported: AtomicBool::new(false),
            known: Default::default(),
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self
            .client
            .request(method, format!("{}{path}", self.config.base));
        match &self.config.auth {
            Some(Auth::Bearer(t)) => rb.bearer_auth(t),
            Some(Auth::Basic { user, password }) => rb.basic_auth(user, Some(password)),
            None => rb,
        }
    }

    /// Sends a request, retrying unreachable servers, 5xx and 429 (honouring Retry-After)
    /// per the retry policy. Other statuses are returned for the caller to judge.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, CatalogError> {
        let what = format!("{method} {}{path}", self.config.base);
        let what = what.as_str();
        let attempt = |_| {
            let mut rb = self.request(method.clone(), path);
            if let Some(b) = body {
                rb = rb
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(serde_json::to_vec(b).unwrap_or_default());
            }
            async move {
                match rb.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                            let hint = retry_after(&resp);
                            let text = resp.text().await.unwrap_or_default();
                            let answer = Answer {
                                status,
                                body: serde_json::from_str(&text).unwrap_or(Value::Null),
                                text,
                            };
                            Err(Unanswered {
                                message: format!("{what}: {}", answer.reason()),
                                hint,
                            })
                        } else {
                            let text = resp.text().await.map_err(|e| Unanswered {
                                message: format!("{what}: reading the answer: {e}"),
                                hint: None,
                            })?;
                            Ok(Answer {
                                status,
                                body: serde_json::from_str(&text).unwrap_or(Value::Null),
                                text,
                            })
                        }
                    }
                    Err(e) => Err(Unanswered {
                        message: format!("{what}: {}", error_chain(&e)),
                        hint: None,
                    }),
                }
            }
        };
        self.config
            .retry
            .run(what, attempt)
            .await
            .map(|(answer, _)| answer)
            .map_err(|(failure, attempts)| {
                CatalogError::Unavailable(format!("{failure} (after {attempts} attempts)"))
            })
    }

    /// Makes sure a collection exists, creating it from its first items when missing.
    async fn ensure_collection(&self, id: &str, items: &[&Value]) -> Result<(), CatalogError> {
        if self.known.lock().await.contains_key(id) {
            return Ok(());
        }
        let path = format!("/collections/{}", encode(id));
        let got = self.send(Method::GET, &path, None).await?;
        match got.status {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => {
                let mut extent = CollectionExtent::default();
                items.iter().for_each(|i| extent.add_item(i));
                let doc = extent.to_collection(id, vec![]);
                let made = self.send(Method::POST, "/collections", Some(&doc)).await?;
                // 409: another worker created it first.
                if !made.status.is_success() && made.status != StatusCode::CONFLICT {
                    return Err(CatalogError::Refused(format!(
                        "creating collection {id} at {}: {}",
                        self.config.base,
                        made.reason()
                    )));
                }
            }
            _ => {
                return Err(CatalogError::Refused(format!(
                    "reading collection {id} at {}: {}",
                    self.config.base,
                    got.reason()
                )));
            }
        }
        self.known.lock().await.insert(id.to_string(), ());
        Ok(())
    }

    /// Upserts one item: POST, and PUT when it exists already.
    async fn upsert_one(
        &self,
        collection: &str,
        item: &Value,
    ) -> Result<ItemOutcome, CatalogError> {
        let items_path = format!("/collections/{}/items", encode(collection));
        let posted = self.send(Method::POST, &items_path, Some(item)).await?;
        let answer = if posted.status == StatusCode::CONFLICT {
            let id = item["id"].as_str().unwrap_or_default();
            self.send(
                Method::PUT,
                &format!("{items_path}/{}", encode(id)),
                Some(item),
            )
            .await?
        } else {
            posted
        };
        Ok(if answer.status.is_success() {
            ItemOutcome::Written
        } else if matches!(
            answer.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(CatalogError::Refused(format!(
                "{}: {}",
                self.config.base,
                answer.reason()
            )));
        } else {
            ItemOutcome::Rejected(answer.reason())
        })
    }

    /// Upserts the items of one collection: one bulk request when the server offers it;
    /// when the bulk request is refused (one invalid item fails it as a whole), item by
    /// item, so the others land and the bad one is reported with the server's reason.
    async fn upsert_collection(
        &self,
        collection: &str,
        items: &[&Value],
    ) -> Result<Vec<ItemOutcome>, CatalogError> {
        self.ensure_collection(collection, items).await?;
        if items.len() > 1 && !self.bulk_unsupported.load(Ordering::Relaxed) {
            let mut by_id = serde_json::Map::new();
            for i in items {
                by_id.insert(
                    i["id"].as_str().unwrap_or_default().to_string(),
                    (*i).clone(),
                );
            }
            let body = json!({"items": by_id, "method": "upsert"});
            let path = format!("/collections/{}/bulk_items", encode(collection));
            let answer = match self.send(Method::POST, &path, Some(&body)).await {
                Ok(a) => a,
                // A live server failing the batch may be failing on one item: try them
                // one by one (an unreachable server fails the first of them just as fast).
                Err(CatalogError::Unavailable(m)) if m.contains(": HTTP 5") => {
                    return self.upsert_each(collection, items, true).await;
                }
                Err(e) => return Err(e),
            };
            match answer.status {
                s if s.is_success() => return Ok(vec![ItemOutcome::Written; items.len()]),
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                    tracing::info!(
                        "{} offers no bulk_items; sending items one by one",
                        self.config.base
                    );
                    self.bulk_unsupported.store(true, Ordering::Relaxed);
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(CatalogError::Refused(format!(
                        "{}: {}",
                        self.config.base,
                        answer.reason()
                    )));
                }
                _ => tracing::info!(
                    "bulk upsert of {} items into {collection} refused ({}); sending them one by one",
                    items.len(),
                    answer.reason()
                ),
            }
        }
        self.upsert_each(collection, items, false).await
    }

    /// Upserts items one at a time. With `isolate` (the server failed the batch with
    /// 5xx), an item the server keeps failing on with 500 while it accepts others of the
    /// batch is reported as refused, not as an outage, so it cannot hold back the rest
    /// forever.
    async fn upsert_each(
        &self,
        collection: &str,
        items: &[&Value],
        isolate: bool,
    ) -> Result<Vec<ItemOutcome>, CatalogError> {
        let mut outcomes = Vec::with_capacity(items.len());
        let mut failing = Vec::new();
        for item in items {
            match self.upsert_one(collection, item).await {
                Ok(o) => outcomes.push(o),
                // Only an internal error: 502, 503 and 504 say the service is unavailable,
                // and an item that meets them is no poison (found by the fault run).
                Err(CatalogError::Unavailable(m)) if isolate && m.contains(": HTTP 500") => {
                    failing.push(outcomes.len());
                    outcomes.push(ItemOutcome::Rejected(format!(
                        "the server fails on this item while accepting others: {m}"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        if !failing.is_empty() && failing.len() == outcomes.len() {
            return Err(CatalogError::Unavailable(format!(
                "{}: every item of the batch failed with a server error",
                self.config.base
            )));
        }
        Ok(outcomes)
    }

    /// Grows the collection's extent and summaries by the items just written.
    async fn update_collection(&self, id: &str, items: &[&Value]) -> Result<(), CatalogError> {
        let path = format!("/collections/{}", encode(id));
        let got = self.send(Method::GET, &path, None).await?;
        if !got.status.is_success() {
            return Err(CatalogError::Refused(format!(
                "reading collection {id}: {}",
                got.reason()
            )));
        }
        let mut extent = CollectionExtent::default();
        extent.add_collection(&got.body);
        items.iter().for_each(|i| extent.add_item(i));
        if extent.is_stated_by(&got.body) {
            return Ok(());
        }
        let mut doc = got.body.clone();
        let fresh = extent.to_collection(id, vec![]);
        doc["extent"] = fresh["extent"].clone();
        if !fresh["summaries"].is_null() {
            doc["summaries"] = fresh["summaries"].clone();
        }
        // Links the server makes itself are not part of what we store.
        if let Some(links) = doc["links"].as_array_mut() {
            links.retain(|l| {
                !matches!(
                    l["rel"].as_str(),
                    Some("self" | "root" | "parent" | "items" | "child" | "queryables")
                )
            });
        }
        let put = self.send(Method::PUT, &path, Some(&doc)).await?;
        if !put.status.is_success() {
            return Err(CatalogError::Refused(format!(
                "updating collection {id}: {}",
                put.reason()
            )));
        }
        Ok(())
    }
}

fn encode(segment: &str) -> String {
    crate::path_segment(segment)
}

/// An error with its causes ("error sending request: connection refused").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[async_trait::async_trait]
impl CatalogSink for StacApi {
    fn url(&self) -> String {
        self.config.base.clone()
    }

    fn prepare_item(&self, item: &mut Value) {
        crate::prepare_for_database(item, self.config_missing_geometry());
    }

    async fn upsert_items(&self, items: Vec<Value>) -> Result<Vec<ItemOutcome>, CatalogError> {
        let (mut outcomes, by_collection) = crate::sort_for_database(&items);
        for (collection, idx) in by_collection {
            let batch: Vec<&Value> = idx.iter().map(|&k| &items[k]).collect();
            let done = self.upsert_collection(&collection, &batch).await?;
            let written: Vec<&Value> = idx
                .iter()
                .zip(&done)
                .filter(|(_, o)| **o == ItemOutcome::Written)
                .map(|(&k, _)| &items[k])
                .collect();
            for (&k, o) in idx.iter().zip(done) {
                outcomes[k] = o;
            }
            if !written.is_empty() {
                self.update_collection(&collection, &written).await?;
            }
        }
        Ok(outcomes)
    }

    async fn get_item(&self, collection: &str, id: &str) -> Result<Option<Value>, CatalogError> {
        let path = format!("/collections/{}/items/{}", encode(collection), encode(id));
        let answer = self.send(Method::GET, &path, None).await?;
        match answer.status {
            s if s.is_success() => Ok(Some(answer.body)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(CatalogError::Refused(format!(
                "reading item {id} of {collection}: {}",
                answer.reason()
            ))),
        }
    }

    async fn delete_item(&self, collection: &str, id: &str) -> Result<(), CatalogError> {
        let path = format!("/collections/{}/items/{}", encode(collection), encode(id));
        let answer = self.send(Method::DELETE, &path, None).await?;
        if answer.status.is_success() || answer.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(CatalogError::Refused(format!(
                "deleting item {id} of {collection}: {}",
                answer.reason()
            )))
        }
    }

    async fn refresh(&self, _collections: &[String]) -> Result<(), CatalogError> {
        // Extents and summaries grow with every batch.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};

    use super::*;

    /// A STAC API on loopback that fails the bulk request and answers item `b` with
    /// `status`, every other request with success.
    fn api_failing_item_b(status: u16) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let body = String::from_utf8_lossy(&body);
                let code = if request.contains("/bulk_items") {
                    503
                } else if request.starts_with("POST") && body.contains(r#""id":"b""#) {
                    status
                } else {
                    200
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                );
            }
        });
        base
    }

    fn sink(base: String) -> StacApi {
        StacApi::new(StacApiConfig {
            base,
            auth: None,
            retry: RetryPolicy {
                attempts: 1,
                initial_backoff_ms: 1,
                max_backoff_ms: 1,
            },
            timeout: Duration::from_secs(10),
            missing_geometry: crate::MissingGeometry::World,
        })
        .unwrap()
    }

    fn items() -> Vec<Value> {
        ["a", "b"]
            .iter()
            .map(|id| {
                json!({"type": "Feature", "id": id, "collection": "c", "bbox": [0, 0, 1, 1],
                       "geometry": {"type": "Point", "coordinates": [0.5, 0.5]},
                       "properties": {"datetime": "2000-01-01T00:00:00Z"}})
            })
            .collect()
    }

    #[tokio::test]
    async fn an_item_the_server_fails_with_500_alone_is_refused() {
        let outcomes = sink(api_failing_item_b(500))
            .upsert_items(items())
            .await
            .unwrap();
        assert_eq!(outcomes[0], ItemOutcome::Written);
        assert!(
            matches!(&outcomes[1], ItemOutcome::Rejected(m) if m.contains("accepting others")),
            "{outcomes:?}"
        );
    }

    #[tokio::test]
    async fn an_item_that_meets_503_is_no_poison_but_an_outage() {
        // Found by the fault run: an item unlucky enough to meet 503 on each of its
        // attempts while others passed was dead-lettered as permanent, and never replayed.
        let e = sink(api_failing_item_b(503))
            .upsert_items(items())
            .await
            .unwrap_err();
        assert!(e.is_transient(), "{e}");
    }
}
