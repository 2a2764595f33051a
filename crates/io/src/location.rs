use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;
use url::Url;

/// A local path or URL resolved to an object store and a path inside it.
#[derive(Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    /// Absolute URL of the object (`file:///...` for local files).
    pub url: String,
    /// The path on this machine, for local files: read directly, without the object-store
    /// machinery (one open file instead of an open per range).
    pub local_path: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("{input}: not a valid URL or path: {reason}")]
    Invalid { input: String, reason: String },
    #[error(
        "{input}: unsupported URL scheme '{scheme}' (use a path, file://, s3://, gs://, az://, abfs://, http://, https:// or memory://)"
    )]
    UnsupportedScheme { input: String, scheme: String },
    #[error(
        "{input}: plain http is forbidden by ZARRSTAC_ALLOW_HTTP={value} (use https://, or unset it)"
    )]
    PlainHttpForbidden { input: String, value: String },
    #[error("{input}: cannot configure the object store: {source}")]
    Store {
        input: String,
        #[source]
        source: object_store::Error,
    },
}

/// The in-process store named `name` (`memory://name/...`): every URL with that name
/// reaches the same store while the process lives. For tests and trial runs.
fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<String, Arc<object_store::memory::InMemory>>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
    stores
        .entry(name.to_string())
        .or_insert_with(|| Arc::new(object_store::memory::InMemory::new()))
        .clone()
}

/// The value of `ZARRSTAC_ALLOW_HTTP` when it forbids plain http (`false`, `0`, `no`, `off`).
fn plain_http_forbidden() -> Option<String> {
    std::env::var("ZARRSTAC_ALLOW_HTTP").ok().filter(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "false" | "0" | "no" | "off"
        )
    })
}

/// The store for `url`'s scheme and authority (host, bucket, account), built once per
/// process: its HTTP client keeps connections open across objects, and building a client
/// (loading TLS roots, reading the environment) costs milliseconds, more than reading a
/// small file of a fast store.
fn shared_store(
    url: &Url,
    build: impl FnOnce() -> Result<Arc<dyn ObjectStore>, object_store::Error>,
) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    // A process reads from a handful of stores; the bound only guards against a runaway.
    const MOST_STORES: usize = 256;
    static STORES: std::sync::LazyLock<
        parking_lot::Mutex<std::collections::HashMap<String, Arc<dyn ObjectStore>>>,
    > = std::sync::LazyLock::new(Default::default);
    let key = url[..url::Position::BeforePath].to_string();
    if let Some(store) = STORES.lock().get(&key) {
        return Ok(store.clone());
    }
    let store = build()?;
    let mut stores = STORES.lock();
    if stores.len() >= MOST_STORES {
        stores.clear();
    }
    Ok(stores.entry(key).or_insert(store).clone())
}

impl Location {
    /// Resolves `input`: an absolute or relative local path, or a URL. Credentials and
    /// endpoints for cloud stores come from the usual environment variables
    /// (`AWS_*`, `GOOGLE_*`, `AZURE_*`), as the providers' own tools read them.
    pub fn parse(input: &str) -> Result<Location, LocationError> {
        let invalid = |reason: String| LocationError::Invalid {
            input: input.to_string(),
            reason,
        };
        let store_err = |source| LocationError::Store {
            input: input.to_string(),
            source,
        };
        let looks_like_url = input.contains("://");
        if !looks_like_url {
            return Self::local(input);
        }
        let url = Url::parse(input).map_err(|e| invalid(e.to_string()))?;
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|_| invalid("not a local file URL".into()))?;
                Self::local(&path.to_string_lossy())
            }
            "s3" | "s3a" => {
                let store = shared_store(&url, || {
                    Ok(Arc::new(
                        object_store::aws::AmazonS3Builder::from_env()
                            .with_url(input)
                            .build()?,
                    ))
                })
                .map_err(store_err)?;
                Ok(Self::remote(store, &url, input))
            }
            "gs" => {
                let store = shared_store(&url, || {
                    Ok(Arc::new(
                        object_store::gcp::GoogleCloudStorageBuilder::from_env()
                            .with_url(input)
                            .build()?,
                    ))
                })
                .map_err(store_err)?;
                Ok(Self::remote(store, &url, input))
            }
            "az" | "azure" | "abfs" | "abfss" => {
                let store = shared_store(&url, || {
                    Ok(Arc::new(
                        object_store::azure::MicrosoftAzureBuilder::from_env()
                            .with_url(input)
                            .build()?,
                    ))
                })
                .map_err(store_err)?;
                Ok(Self::remote(store, &url, input))
            }
            "http" | "https" => {
                let base = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())
                    + &url.port().map(|p| format!(":{p}")).unwrap_or_default();
                // A plain http:// URL is asked for by name, so it is allowed unless the
                // operator forbids it (ZARRSTAC_ALLOW_HTTP=false), as AWS_ALLOW_HTTP does for S3.
                if url.scheme() == "http"
                    && let Some(value) = plain_http_forbidden()
                {
                    return Err(LocationError::PlainHttpForbidden {
                        input: input.to_string(),
                        value,
                    });
                }
                let store = shared_store(&url, || {
                    let options =
                        object_store::ClientOptions::new().with_allow_http(url.scheme() == "http");
                    Ok(Arc::new(
                        object_store::http::HttpBuilder::new()
                            .with_url(base)
                            .with_client_options(options)
                            .build()?,
                    ))
                })
                .map_err(store_err)?;
                Ok(Self::remote(store, &url, input))
            }
            "memory" => {
                let store = memory_store(url.host_str().unwrap_or_default());
                Ok(Self::remote(store, &url, input))
            }
            other => Err(LocationError::UnsupportedScheme {
                input: input.to_string(),
                scheme: other.to_string(),
            }),
        }
    }

    fn remote(store: Arc<dyn ObjectStore>, url: &Url, input: &str) -> Location {
        let key = url.path().trim_start_matches('/');
        // For http(s) and bucket URLs the store is rooted at the host/bucket; the path is the rest.
        let path = Path::from_url_path(key).unwrap_or_else(|_| Path::from(key));
        Location {
            store,
            path,
            url: input.to_string(),
            local_path: None,
        }
    }

    fn local(input: &str) -> Result<Location, LocationError> {
        let invalid = |reason: String| LocationError::Invalid {
            input: input.to_string(),
            reason,
        };
        let p = std::path::Path::new(input);
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| invalid(e.to_string()))?
                .join(p)
        };
        // Canonical where it exists (so references name the real file); as given otherwise,
        // e.g. for an output not yet written.
        let abs = abs.canonicalize().unwrap_or(abs);
        let url = Url::from_file_path(&abs)
            .map_err(|_| invalid("cannot express as a file URL".into()))?;
        let path = Path::from_absolute_path(&abs).map_err(|e| invalid(e.to_string()))?;
        Ok(Location {
            store: Arc::new(object_store::local::LocalFileSystem::new()),
            path,
            url: url.to_string(),
            local_path: Some(abs),
        })
    }

    /// The last path segment (the file name).
    pub fn file_name(&self) -> &str {
        self.url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(&self.url)
    }

    /// The URL of an object listed under this location (its store path), with each path
    /// segment escaped as URLs need it.
    pub fn url_of(&self, object: &Path) -> String {
        const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
            .add(b' ')
            .add(b'"')
            .add(b'#')
            .add(b'%')
            .add(b'<')
            .add(b'>')
            .add(b'?')
            .add(b'`')
            .add(b'{')
            .add(b'}');
        let full = object.as_ref();
        let rel = full
            .strip_prefix(self.path.as_ref())
            .unwrap_or(full)
            .trim_start_matches('/');
        let escaped: Vec<String> = rel
            .split('/')
            .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        format!("{}/{}", self.url.trim_end_matches('/'), escaped.join("/"))
    }

    /// A location for `name` inside this one, taken as a directory.
    pub fn join(&self, name: &str) -> Location {
        let mut path = self.path.clone();
        for part in name.split('/').filter(|s| !s.is_empty()) {
            path = path.clone().join(part);
        }
        let url = format!("{}/{}", self.url.trim_end_matches('/'), name);
        Location {
            store: self.store.clone(),
            path,
            url,
            local_path: self.local_path.as_ref().map(|p| p.join(name)),
        }
    }
}

impl Location {
    /// Writes `bytes` unless the object already holds exactly these bytes, so that
    /// re-running on the same inputs changes nothing. Returns whether it wrote.
    pub async fn put_if_changed(&self, bytes: Vec<u8>) -> Result<bool, crate::IoError> {
        use object_store::ObjectStoreExt;
        let err = |source| crate::IoError::Store {
            url: self.url.clone(),
            source,
        };
        match self.store.get(&self.path).await {
            // Only an object of the same size can hold the same bytes.
            Ok(existing) if existing.meta.size == bytes.len() as u64 => {
                if existing.bytes().await.map_err(err)?[..] == bytes[..] {
                    return Ok(false);
                }
            }
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(err(e)),
        }
        self.store
            .put(&self.path, object_store::PutPayload::from(bytes))
            .await
            .map_err(err)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_become_absolute_file_urls() {
        let loc = Location::parse("Cargo.toml").unwrap();
        assert!(loc.url.starts_with("file:///"), "{}", loc.url);
        assert!(loc.url.ends_with("/Cargo.toml"));
        assert_eq!(loc.file_name(), "Cargo.toml");
    }

    #[test]
    fn unknown_scheme_is_refused_with_the_scheme_named() {
        let err = Location::parse("ftp://host/x.nc").unwrap_err();
        assert!(err.to_string().contains("'ftp'"), "{err}");
    }

    #[tokio::test]
    async fn plain_http_urls_are_read() {
        use object_store::ObjectStoreExt;
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let mut stream = stream;
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e\"\r\n\
                      Last-Modified: Wed, 02 Dec 2026 10:00:00 GMT\r\n\r\n",
                )
                .unwrap();
        });
        let loc = Location::parse(&format!("http://127.0.0.1:{port}/data/x.nc")).unwrap();
        let meta = loc.store.head(&loc.path).await.unwrap();
        assert_eq!(meta.size, 5);
    }

    #[tokio::test]
    async fn memory_urls_of_one_name_share_a_store() {
        use object_store::ObjectStoreExt;
        let a = Location::parse("memory://shared/dir/x.json").unwrap();
        a.put_if_changed(b"{}".to_vec()).await.unwrap();
        let b = Location::parse("memory://shared/dir/x.json").unwrap();
        assert_eq!(
            &b.store.get(&b.path).await.unwrap().bytes().await.unwrap()[..],
            b"{}"
        );
        let other = Location::parse("memory://other/dir/x.json").unwrap();
        assert!(other.store.get(&other.path).await.is_err());
    }

    #[test]
    fn s3_urls_keep_the_key_as_path() {
        let loc = Location::parse("s3://bucket/dir/a%20b.nc").unwrap();
        assert_eq!(loc.url, "s3://bucket/dir/a%20b.nc");
        assert_eq!(loc.path.as_ref(), "dir/a b.nc");
    }
}
