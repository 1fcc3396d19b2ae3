//! Cooperative cancellation of blocking work: the service runs each request's work on a blocking
//! thread with a token in a thread-local; when the request's time limit fires the token is set,
//! and long loops (export chips, scoring every row) call [`check`] and stop with a 503 instead of
//! working on for an answer nobody will read.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

thread_local! {
    static CURRENT: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// A cancellation token (set once, read by the work).
#[derive(Debug, Clone, Default)]
pub struct Token(Arc<AtomicBool>);

impl Token {
    pub fn new() -> Self {
        Token::default()
    }

    /// Asks the work to stop at its next [`check`].
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Runs `work` on this thread with this token current.
    pub fn run<T>(&self, work: impl FnOnce() -> T) -> T {
        let previous = CURRENT.with(|c| c.replace(Some(self.0.clone())));
        let out = work();
        CURRENT.with(|c| *c.borrow_mut() = previous);
        out
    }
}

/// 503 when the current work was cancelled; Ok outside any token (the CLI, tests).
pub fn check() -> Result<()> {
    let cancelled = CURRENT.with(|c| c.borrow().as_ref().is_some_and(|t| t.load(Ordering::Acquire)));
    if cancelled {
        return Err(Error::Busy(
            "stopped: the request ran past its time limit (nothing of it was kept)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_s_own_work_sees_it() {
        assert!(check().is_ok());
        let t = Token::new();
        t.run(|| assert!(check().is_ok()));
        t.cancel();
        assert!(t.run(check).is_err());
        assert!(check().is_ok(), "not current outside run");
        let other = Token::new();
        assert!(other.run(check).is_ok());
    }
}
