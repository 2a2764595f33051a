//! The runner every job drives: requests in, one outcome per request out.
//!
//! A request runs through the stages; a file of a multi-file dataset then joins its
//! dataset's rebuild. Transient failures are retried through the one retry engine
//! ([`zarrstac_io::RetryPolicy::run`]). `ingest`, `backfill --inline` and `replay` run
//! batches ([`Runner::run_batch`]: a dataset's files of one batch make one rebuild); the
//! worker runs requests one by one as messages arrive ([`Runner::process`]: rebuilds of
//! one dataset coalesced).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use zarrstac_io::Location;

use crate::datasets::Rebuilds;
use crate::failure::Failure;
use crate::outcome::{Finished, Outcome, OutcomeSink, Summary};
use crate::stages::{DatasetPublication, MemberFile, Staged, Stages};

/// One source to ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub source: String,
    /// The collection the request asks for (else configured, else by dataset family).
    pub collection: Option<String>,
    /// What the request says of the file's dataset (its PID, retraction).
    pub publication: DatasetPublication,
}

impl Request {
    pub fn new(source: impl Into<String>) -> Self {
        Request {
            source: source.into(),
            collection: None,
            publication: DatasetPublication::default(),
        }
    }
}

/// A request after its own stages: finished, or a dataset's file waiting for the
/// rebuild that includes it ([`Runner::complete`]).
pub enum Staging {
    Finished(Finished),
    Member(Box<Waiting>),
}

/// A dataset's file whose references are written, waiting for its dataset's rebuild.
pub struct Waiting {
    pub request: Request,
    member: MemberFile,
    attempts: u32,
}

/// Told of each request as it finishes (a progress bar, say).
pub trait Progress: Send + Sync {
    fn finished(&self, finished: &Finished);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn finished(&self, _: &Finished) {}
}

pub struct Runner {
    stages: Arc<Stages>,
    rebuilds: Rebuilds,
    /// Collections written since the last refresh.
    touched: parking_lot::Mutex<BTreeSet<String>>,
}

fn url_of(source: &str) -> String {
    Location::parse(source)
        .map(|l| l.url)
        .unwrap_or_else(|_| source.to_string())
}

impl Runner {
    pub fn new(stages: Arc<Stages>) -> Self {
        Runner {
            stages,
            rebuilds: Rebuilds::default(),
            touched: Default::default(),
        }
    }

    pub fn stages(&self) -> &Arc<Stages> {
        &self.stages
    }

    pub fn into_stages(self) -> Arc<Stages> {
        self.stages
    }

    /// One request to its end: its item, or its dataset's item rebuilt with it, is in
    /// the catalog (coalesced with other files of the dataset in flight), or it failed
    /// after its retries.
    pub async fn process(&self, request: &Request) -> Finished {
        match self.stage(request).await {
            Staging::Finished(f) => f,
            Staging::Member(m) => self.complete(*m).await,
        }
    }

    /// The first half of [`Runner::process`]: the request's own stages, retried. A file
    /// of a multi-file dataset comes back waiting for its dataset's rebuild, so that the
    /// caller can go on with other requests meanwhile (their files then fold into the
    /// same rebuild).
    pub async fn stage(&self, request: &Request) -> Staging {
        let policy = &self.stages.config.run.retry;
        let what = format!("ingesting {}", request.source);
        let staged = policy
            .run(&what, |_| {
                self.stages.stage(
                    &request.source,
                    request.collection.as_deref(),
                    &request.publication,
                )
            })
            .await;
        match staged {
            Ok((Staged::Member(member), attempts)) => Staging::Member(Box::new(Waiting {
                request: request.clone(),
                member: *member,
                attempts,
            })),
            Ok((
                Staged::Item {
                    collection,
                    changed,
                    ..
                },
                attempts,
            )) => Staging::Finished(self.finished(request, Ok(((collection, changed), attempts)))),
            Err(e) => Staging::Finished(self.finished(request, Err(e))),
        }
    }

    /// The second half of [`Runner::process`]: the dataset's rebuild holding the file
    /// (coalesced, retried).
    pub async fn complete(&self, waiting: Waiting) -> Finished {
        let policy = &self.stages.config.run.retry;
        let what = format!("rebuilding the dataset of {}", waiting.request.source);
        let collection = waiting.member.collection.clone();
        let member = &waiting.member;
        let result = policy
            .run(&what, |_| self.rebuilds.add(&self.stages, member.clone()))
            .await;
        let r = match result {
            Ok((changed, more)) => Ok(((collection, changed), waiting.attempts + more - 1)),
            Err((f, more)) => Err((f, waiting.attempts + more - 1)),
        };
        self.finished(&waiting.request, r)
    }

    fn finished(
        &self,
        request: &Request,
        result: Result<((String, bool), u32), (Failure, u32)>,
    ) -> Finished {
        let url = url_of(&request.source);
        match result {
            Ok(((collection, changed), attempts)) => {
                self.touched.lock().insert(collection.clone());
                Finished {
                    source: request.source.clone(),
                    url,
                    collection: Some(collection),
                    attempts,
                    outcome: if changed {
                        Outcome::Ingested
                    } else {
                        Outcome::Unchanged
                    },
                }
            }
            Err((failure, attempts)) => Finished {
                source: request.source.clone(),
                url,
                collection: None,
                attempts,
                outcome: Outcome::Failed(failure),
            },
        }
    }

    /// Brings the collections written since the last refresh up to date (extents,
    /// summaries; a static catalog's links). Kept for the next refresh when it fails.
    pub async fn refresh(&self) -> Result<(), Failure> {
        let collections: Vec<String> = std::mem::take(&mut *self.touched.lock())
            .into_iter()
            .collect();
        if collections.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.stages.catalog().refresh(&collections).await {
            self.touched.lock().extend(collections);
            return Err(Failure::classify(
                e.is_transient(),
                format!("updating collections: {e}"),
            ));
        }
        Ok(())
    }

    /// A batch of requests, `concurrency` at a time; the files of each multi-file dataset
    /// are rebuilt into it once all of the batch's files are staged. Every outcome goes to
    /// `sink` and `progress`; collections are refreshed at the end.
    pub async fn run_batch(
        &self,
        requests: Vec<Request>,
        sink: &dyn OutcomeSink,
        progress: &dyn Progress,
    ) -> anyhow::Result<Summary> {
        let mut summary = Summary::default();
        let staged = futures::stream::iter(requests)
            .map(|request| async move { self.stage(&request).await })
            .buffer_unordered(self.stages.config.run.concurrency.max(1));
        futures::pin_mut!(staged);
        // Files of multi-file datasets, by (collection, dataset id). A dataset gathering
        // `run.max_files_per_rebuild` files is rebuilt with them at once, so that a
        // backfill of 100,000 files of one dataset holds a bounded number of them.
        let most = self.stages.config.run.max_files_per_rebuild.max(1);
        let mut datasets: BTreeMap<(String, String), Vec<Waiting>> = BTreeMap::new();
        while let Some(staging) = staged.next().await {
            match staging {
                Staging::Member(w) => {
                    let key = (w.member.collection.clone(), w.member.dataset_id.clone());
                    let waiting = datasets.entry(key.clone()).or_default();
                    waiting.push(*w);
                    if waiting.len() >= most {
                        let members = std::mem::take(waiting);
                        self.rebuild_batch(key, members, sink, progress, &mut summary)
                            .await?;
                    }
                }
                Staging::Finished(finished) => {
                    self.report(&finished, sink, progress, &mut summary).await?
                }
            }
        }
        for (key, members) in datasets {
            if !members.is_empty() {
                self.rebuild_batch(key, members, sink, progress, &mut summary)
                    .await?;
            }
        }
        if let Err(f) = self.refresh().await {
            anyhow::bail!("{}", f.message);
        }
        Ok(summary)
    }

    /// Rebuilds a dataset with files of a batch and reports each file's outcome.
    async fn rebuild_batch(
        &self,
        (collection, id): (String, String),
        members: Vec<Waiting>,
        sink: &dyn OutcomeSink,
        progress: &dyn Progress,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        let publication = DatasetPublication::of_all(members.iter().map(|w| &w.member.publication));
        // The files move out of the waiting members (one copy, not two, while each
        // attempt takes its own).
        let mut files = Vec::with_capacity(members.len());
        let mut waiting = Vec::with_capacity(members.len());
        for w in members {
            let Waiting {
                request,
                member,
                attempts,
            } = w;
            files.push(member.dataset);
            waiting.push((request, member.refs_changed, attempts));
        }
        let what = format!("rebuilding dataset {id}");
        let result = self
            .stages
            .config
            .run
            .retry
            .run(&what, |_| {
                self.rebuilds
                    .rebuild(&self.stages, &collection, &id, files.clone(), &publication)
            })
            .await;
        drop(files);
        for (request, refs_changed, attempts) in waiting {
            let r = match &result {
                Ok((changed, more)) => Ok((
                    (collection.clone(), *changed || refs_changed),
                    attempts + more - 1,
                )),
                Err((f, more)) => Err((f.clone(), attempts + more - 1)),
            };
            let finished = self.finished(&request, r);
            self.report(&finished, sink, progress, summary).await?;
        }
        Ok(())
    }

    async fn report(
        &self,
        finished: &Finished,
        sink: &dyn OutcomeSink,
        progress: &dyn Progress,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        summary.add(finished);
        progress.finished(finished);
        sink.record(finished).await
    }
}
