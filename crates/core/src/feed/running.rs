//! A listener's background task and its stop signal, shared by the
//! change feed and the broker consumers: stopping is idempotent and takes
//! `&self`, so a binding holds a listener as it is.

use std::sync::Mutex;

use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug)]
pub(super) struct Running {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Running {
    /// A stop signal, and the receiver the task watches.
    pub fn channel() -> (watch::Sender<bool>, watch::Receiver<bool>) {
        watch::channel(false)
    }

    pub fn new(stop: watch::Sender<bool>, task: JoinHandle<()>) -> Self {
        Running {
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    fn take(&self) -> Option<JoinHandle<()>> {
        self.task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Signal the stop and wait for the task (once; later calls return at
    /// once).
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.take() {
            let _ = t.await;
        }
    }

    /// End the task at once, without its own clean-up.
    pub fn kill(&self) {
        if let Some(t) = self.take() {
            t.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
