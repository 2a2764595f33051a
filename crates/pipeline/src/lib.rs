//! The orchestration every zarrstac job shares.
//!
//! - [`source`]: what a source is (one detector) and which sources an argument names;
//! - [`stages`]: detect, scan, write references, build, validate and publish the item;
//! - [`runner`]: requests in, one outcome each out, transient failures retried through
//!   the one retry engine;
//! - [`outcome`]: where outcomes go (the dead-letter file or topic, the run summary);
//! - [`datasets`]: multi-file datasets, rebuilt from what is stored, never by reading
//!   their files again;
//! - [`pid_table`]: the PIDs of CMIP6 datasets, which no file carries;
//! - [`config`]: the settings of `pipeline.toml`.
//!
//! The `zarrstac` commands are adapters: they turn their arguments into requests and
//! hand the outcomes to a sink.

pub mod config;
pub mod datasets;
pub mod failure;
pub mod outcome;
pub mod pid_table;
pub mod runner;
pub mod source;
pub mod stages;

pub use config::PipelineConfig;
pub use failure::{ErrorClass, Failure};
pub use outcome::{Finished, Outcome, OutcomeSink, Summary};
pub use runner::{NoProgress, Progress, Request, Runner, Staging, Waiting};
pub use stages::{DatasetPublication, Staged, Stages};
