//! A controller running in-process in the background for one namespace; stopped on drop.

use std::time::Duration;

use kube::Client;
use llm_batch_operator::controller::{self, Options};
use tokio::sync::oneshot;

pub struct RunningController {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningController {
    pub fn start(client: &Client, ns: &str) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let options = Options::namespace(ns);
        let task = tokio::spawn(controller::run(client.clone(), options, async move {
            let _ = stopped.await;
        }));
        RunningController { stop: Some(stop), task }
    }

    /// Asks for a graceful stop and waits (bounded) for it.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.task.abort();
    }
}
