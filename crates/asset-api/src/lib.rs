//! `zarrstac serve`: the asset-list and asset-search API (the 2022 drafts, see
//! docs/asset-api.md) over the asset documents the pgstac sink keeps beside pgstac. It
//! runs beside stac-fastapi-pgstac on the same database and is read-only.
//!
//! - `GET /`, `GET /conformance`, `GET /api` (OpenAPI 3 of what it serves);
//! - `GET|POST /collections/{c}/items/{i}/assets`: an item's documents, paged;
//! - `GET /collections/{c}/items/{i}/assets/{id}`: one;
//! - `GET|POST /asset/search`: across items and collections.

mod db;
pub mod query;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::db::DbError;
use crate::query::{AssetQuery, BadParameter, Limits, Token};

/// `[serve]` of pipeline.toml.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ServeConfig {
    /// Address to listen on.
    pub addr: String,
    /// The URL clients reach this service at: the base of its links and of the items'
    /// `rel: "asset"` links. Empty: the pgstac sink keeps every asset inline.
    pub public_url: String,
    /// The STAC API serving the items (stac-fastapi-pgstac): the target of the asset
    /// documents' `item` and `collection` links.
    pub stac_api_url: String,
    /// The pgstac database; unset: `output.catalog` when it is one.
    pub catalog: Option<String>,
    /// Connections to the database.
    pub pool_size: usize,
    /// Documents per page unless `limit` says otherwise, and the most `limit` may ask.
    pub default_limit: usize,
    pub max_limit: usize,
    /// Milliseconds a query may run before the database stops it.
    pub statement_timeout_ms: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: "127.0.0.1:8083".into(),
            public_url: "http://127.0.0.1:8083".into(),
            stac_api_url: "http://127.0.0.1:8082".into(),
            catalog: None,
            pool_size: 8,
            default_limit: 10,
            max_limit: 10_000,
            statement_timeout_ms: 10_000,
        }
    }
}

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("catalog {url}: {reason}")]
    Catalog { url: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// The conformance classes served.
pub const CONFORMANCE: &[&str] = &[
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0-beta.5/asset-list",
    "https://api.stacspec.org/v1.0.0-beta.2/asset-search",
];

struct Service {
    pool: deadpool_postgres::Pool,
    base: String,
    stac_api: String,
    /// `base` and `stac_api` as JSON string contents (escaped, without quotes).
    base_json: String,
    stac_api_json: String,
    limits: Limits,
}

/// A string's JSON form without its quotes.
fn json_escaped(s: &str) -> String {
    let quoted = Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// Connects to the database (creating zarrstac's asset table there if missing) and
/// returns the service's routes.
pub async fn router(config: &ServeConfig, catalog: &str) -> Result<Router, ServeError> {
    let shown = zarrstac_catalog::redact(catalog);
    let fail = |reason: String| ServeError::Catalog {
        url: shown.clone(),
        reason,
    };
    let pool = zarrstac_catalog::connection_pool(
        catalog,
        config.pool_size.max(1),
        &format!(
            "-c search_path=pgstac,public -c TimeZone=UTC -c statement_timeout={}",
            config.statement_timeout_ms
        ),
    )
    .map_err(|e| fail(e.to_string()))?;
    let mut client = pool.get().await.map_err(|e| fail(e.to_string()))?;
    let version = zarrstac_catalog::asset_table::migrate(&mut client)
        .await
        .map_err(|e| fail(format!("cannot prepare the asset table: {e}")))?;
    drop(client);
    tracing::info!("asset table at version {version} in {shown}");
    let base = config.public_url.trim_end_matches('/').to_string();
    let stac_api = config.stac_api_url.trim_end_matches('/').to_string();
    let service = Arc::new(Service {
        pool,
        base_json: json_escaped(&base),
        stac_api_json: json_escaped(&stac_api),
        base,
        stac_api,
        limits: Limits {
            default_limit: config.default_limit.clamp(1, config.max_limit.max(1)),
            max_limit: config.max_limit.max(1),
        },
    });
    Ok(Router::new()
        .route("/", get(landing))
        .route("/conformance", get(conformance))
        .route("/api", get(openapi))
        .route(
            "/collections/{collection}/items/{item}/assets",
            get(list_get).post(list_post),
        )
        .route(
            "/collections/{collection}/items/{item}/assets/{asset}",
            get(one_asset),
        )
        .route("/asset/search", get(search_get).post(search_post))
        .fallback(not_found)
        .with_state(service))
}

/// Serves until SIGINT or SIGTERM.
pub async fn serve(config: &ServeConfig, catalog: &str) -> Result<(), ServeError> {
    let app = router(config, catalog).await?;
    let listener = tokio::net::TcpListener::bind(&config.addr)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.addr.clone(),
            source,
        })?;
    tracing::info!(
        "asset API on {} (public at {})",
        config.addr,
        config.public_url
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.addr.clone(),
            source,
        })
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

type Shared = State<Arc<Service>>;

/// An answer that is an error document (`code`, `description`), as STAC APIs give.
struct Failure(StatusCode, String);

impl From<BadParameter> for Failure {
    fn from(e: BadParameter) -> Self {
        Failure(StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl From<DbError> for Failure {
    fn from(e: DbError) -> Self {
        match e {
            DbError::BadGeometry(reason) => {
                Failure(StatusCode::BAD_REQUEST, format!("intersects: {reason}"))
            }
            DbError::Unavailable(_) => {
                tracing::warn!("{e}");
                Failure(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            DbError::Failed(_) => {
                tracing::error!("{e}");
                Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let code = match self.0 {
            StatusCode::BAD_REQUEST => "BadRequest",
            StatusCode::NOT_FOUND => "NotFound",
            StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
            _ => "ServerError",
        };
        let body = json!({"code": code, "description": self.1});
        (self.0, json_response("application/json", body.to_string())).into_response()
    }
}

fn json_response(media_type: &'static str, body: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    r
}

fn geojson(body: String) -> Response {
    json_response("application/geo+json", body)
}

async fn not_found() -> Failure {
    Failure(StatusCode::NOT_FOUND, "no such resource".into())
}

async fn landing(State(s): Shared) -> Response {
    let b = &s.base;
    let body = json!({
        "type": "Catalog",
        "stac_version": "1.0.0",
        "id": "zarrstac-assets",
        "title": "zarrstac asset API",
        "description": "Asset documents of items with many files: asset lists per item and asset search across items.",
        "conformsTo": CONFORMANCE,
        "links": [
            {"rel": "self", "href": format!("{b}/"), "type": "application/json"},
            {"rel": "root", "href": format!("{b}/"), "type": "application/json"},
            {"rel": "conformance", "href": format!("{b}/conformance"), "type": "application/json"},
            {"rel": "service-desc", "href": format!("{b}/api"), "type": "application/vnd.oai.openapi+json;version=3.0"},
            {"rel": "asset-search", "href": format!("{b}/asset/search"), "type": "application/geo+json", "method": "GET"},
            {"rel": "asset-search", "href": format!("{b}/asset/search"), "type": "application/geo+json", "method": "POST"},
            {"rel": "data", "href": format!("{}/collections", s.stac_api), "type": "application/json", "title": "the items, in the STAC API"}
        ]
    });
    json_response("application/json", body.to_string())
}

async fn conformance() -> Response {
    json_response(
        "application/json",
        json!({"conformsTo": CONFORMANCE}).to_string(),
    )
}

async fn openapi(State(s): Shared) -> Response {
    let mut doc: Value =
        serde_json::from_str(include_str!("openapi.json")).expect("the bundled OpenAPI document");
    doc["servers"] = json!([{"url": s.base}]);
    json_response(
        "application/vnd.oai.openapi+json;version=3.0",
        doc.to_string(),
    )
}

/// Path segments of a request; one that cannot be a stored name (not UTF-8, or holding a
/// NUL) names nothing here.
fn segments<T>(path: Result<Path<T>, PathRejection>) -> Result<T, Failure>
where
    T: PathSegments,
{
    match path {
        Ok(Path(p)) if !p.has_nul() => Ok(p),
        _ => Err(Failure(StatusCode::NOT_FOUND, "no such resource".into())),
    }
}

trait PathSegments {
    fn has_nul(&self) -> bool;
}

impl PathSegments for (String, String) {
    fn has_nul(&self) -> bool {
        self.0.contains('\0') || self.1.contains('\0')
    }
}

impl PathSegments for (String, String, String) {
    fn has_nul(&self) -> bool {
        self.0.contains('\0') || self.1.contains('\0') || self.2.contains('\0')
    }
}

fn from_query(raw: Option<String>, limits: Limits) -> Result<AssetQuery, BadParameter> {
    let raw = raw.unwrap_or_default();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect();
    AssetQuery::from_pairs(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())), limits)
}

/// How a request came, for its paging links.
#[derive(Clone, Copy, PartialEq)]
enum Method {
    Get,
    Post,
}

async fn list_get(
    State(s): Shared,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Failure> {
    let (c, i) = segments(path)?;
    let q = from_query(raw, s.limits)?;
    item_list(&s, c, i, q, Method::Get).await
}

async fn list_post(
    State(s): Shared,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
) -> Result<Response, Failure> {
    let (c, i) = segments(path)?;
    let q = AssetQuery::from_json(&body, s.limits)?;
    item_list(&s, c, i, q, Method::Post).await
}

async fn item_list(
    s: &Service,
    collection: String,
    item: String,
    mut q: AssetQuery,
    method: Method,
) -> Result<Response, Failure> {
    // The path names the item; the list parameters of a search do not apply.
    q.collections = vec![collection.clone()];
    q.items = vec![item.clone()];
    let client = s.pool.get().await.map_err(DbError::from)?;
    // Both on the one connection, pipelined.
    let (exists, page) = tokio::try_join!(
        db::item_exists(&client, &collection, &item),
        db::page(&client, &q)
    )?;
    drop(client);
    if !exists && page.matched == 0 {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            format!("no item {item} in collection {collection}"),
        ));
    }
    let here = format!(
        "{}/collections/{}/items/{}/assets",
        s.base,
        zarrstac_catalog::path_segment(&collection),
        zarrstac_catalog::path_segment(&item)
    );
    // Parameters of a search are not this endpoint's; they stay out of its links.
    q.collections.clear();
    q.items.clear();
    Ok(geojson(collection_body(s, &here, &q, page, method)))
}

async fn search_get(State(s): Shared, RawQuery(raw): RawQuery) -> Result<Response, Failure> {
    let q = from_query(raw, s.limits)?;
    search(&s, q, Method::Get).await
}

async fn search_post(State(s): Shared, body: Bytes) -> Result<Response, Failure> {
    let q = AssetQuery::from_json(&body, s.limits)?;
    search(&s, q, Method::Post).await
}

async fn search(s: &Service, q: AssetQuery, method: Method) -> Result<Response, Failure> {
    let client = s.pool.get().await.map_err(DbError::from)?;
    let page = db::page(&client, &q).await?;
    drop(client);
    let here = format!("{}/asset/search", s.base);
    Ok(geojson(collection_body(s, &here, &q, page, method)))
}

async fn one_asset(
    State(s): Shared,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response, Failure> {
    let (c, i, id) = segments(path)?;
    let client = s.pool.get().await.map_err(DbError::from)?;
    match db::one(&client, &c, &i, &id).await? {
        Some(doc) => Ok(geojson(with_links(&s, &doc, &c, &i, &id))),
        None => Err(Failure(
            StatusCode::NOT_FOUND,
            format!("no asset {id} of item {i} in collection {c}"),
        )),
    }
}

/// A stored document (JSON text without links) with its links.
fn with_links(s: &Service, doc: &str, collection: &str, item: &str, id: &str) -> String {
    let mut out = String::with_capacity(doc.len() + 600);
    push_with_links(&mut out, s, doc, collection, item, id);
    out
}

/// Appends a stored document with its links, written as text: the URLs' variable parts
/// are percent-encoded path segments and the configured bases JSON-escaped once, so
/// nothing needs escaping here (a page of 100 documents is built without a JSON tree).
fn push_with_links(
    out: &mut String,
    s: &Service,
    doc: &str,
    collection: &str,
    item: &str,
    id: &str,
) {
    use std::fmt::Write;
    let body = doc.trim_end();
    let Some(open) = body.strip_suffix('}') else {
        out.push_str(body);
        return;
    };
    out.push_str(open);
    if !open.trim_end().ends_with('{') {
        out.push_str(", ");
    }
    let (c, i, a) = (
        zarrstac_catalog::path_segment(collection),
        zarrstac_catalog::path_segment(item),
        zarrstac_catalog::path_segment(id),
    );
    let (base, api) = (&s.base_json, &s.stac_api_json);
    let _ = write!(
        out,
        r#""links": [{{"rel": "self", "href": "{base}/collections/{c}/items/{i}/assets/{a}", "type": "application/geo+json"}}, {{"rel": "item", "href": "{api}/collections/{c}/items/{i}", "type": "application/geo+json"}}, {{"rel": "collection", "href": "{api}/collections/{c}", "type": "application/json"}}, {{"rel": "root", "href": "{base}/", "type": "application/json"}}]}}"#
    );
}

/// A FeatureCollection of a page, with paging links that repeat the query.
fn collection_body(
    s: &Service,
    here: &str,
    q: &AssetQuery,
    page: db::Page,
    method: Method,
) -> String {
    let link = |rel: &str, token: Option<Token>| -> Value {
        match method {
            Method::Get => {
                let mut url = url::Url::parse(here).expect("the service's own URL");
                url.query_pairs_mut()
                    .extend_pairs(q.to_pairs(token.as_ref()));
                json!({"rel": rel, "href": url.as_str(), "type": "application/geo+json", "method": "GET"})
            }
            Method::Post => json!({
                "rel": rel, "href": here, "type": "application/geo+json", "method": "POST",
                "body": q.to_body(token.as_ref()), "merge": false
            }),
        }
    };
    let mut links = vec![
        link("self", q.token.clone()),
        json!({"rel": "root", "href": format!("{}/", s.base), "type": "application/json"}),
    ];
    if page.has_next
        && let Some((_, last)) = page.rows.last()
    {
        links.push(link(
            "next",
            Some(Token {
                backwards: false,
                key: last.clone(),
            }),
        ));
    }
    if page.has_prev
        && let Some((_, first)) = page.rows.first()
    {
        links.push(link(
            "prev",
            Some(Token {
                backwards: true,
                key: first.clone(),
            }),
        ));
    }
    let mut out =
        String::with_capacity(page.rows.iter().map(|r| r.0.len() + 600).sum::<usize>() + 1024);
    out.push_str(r#"{"type":"FeatureCollection","features":["#);
    for (k, (doc, key)) in page.rows.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        push_with_links(&mut out, s, doc, &key.collection, &key.item, &key.id);
    }
    out.push_str(&format!(
        r#"],"links":{},"numberMatched":{},"numberReturned":{}}}"#,
        Value::Array(links),
        page.matched,
        page.rows.len()
    ));
    out
}
