//! The engine a running server answers with, replaced whole when a writer commits: a watcher
//! reads the manifest every few seconds and, when it changed (a new generation of rows, or the
//! graph and text index rebuilt), opens the new index beside the old one and swaps. A request
//! keeps the engine it started with; none ever sees a half-opened index.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::engine::Engine;
use crate::error::Result;

/// How often [`LiveEngine::watch`] looks at the manifest by default.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The current engine, swappable.
#[derive(Debug)]
pub struct LiveEngine {
    current: RwLock<Arc<Engine>>,
    swaps: AtomicU64,
}

impl LiveEngine {
    pub fn new(engine: Arc<Engine>) -> Arc<Self> {
        Arc::new(LiveEngine {
            current: RwLock::new(engine),
            swaps: AtomicU64::new(0),
        })
    }

    /// The engine to answer with now.
    pub fn get(&self) -> Arc<Engine> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many times the engine was replaced.
    pub fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Acquire)
    }

    /// Checks the manifest once (blocking: a changed index is opened here); true when the
    /// engine was replaced.
    pub fn refresh(&self) -> Result<bool> {
        let engine = self.get();
        match engine.reopen()? {
            None => Ok(false),
            Some(next) => {
                let rows = next.index().len();
                let generation = next.index().manifest().generation;
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
                self.swaps.fetch_add(1, Ordering::AcqRel);
                tracing::info!(generation, rows, "serving a new generation of the index");
                Ok(true)
            }
        }
    }

    /// Refreshes every `every` until the task is dropped. A failure (a manifest naming files a
    /// writer has not finished, a damaged part) is logged and the current engine kept.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let live = self.clone();
            match tokio::task::spawn_blocking(move || live.refresh()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!("the index changed but does not open ({e}); still serving the last one")
                }
                Err(e) => tracing::warn!("index watch failed: {e}"),
            }
        }
    }
}
