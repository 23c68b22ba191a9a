//! What `/healthz` and `/readyz` answer. The controller sets readiness as it goes: watches
//! synced (or, under leader election, standing by behind another leader).

use std::sync::Mutex;

/// Readiness, with the reason when not ready.
#[derive(Debug)]
pub struct Health {
    not_ready: Mutex<Option<&'static str>>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            not_ready: Mutex::new(Some("starting")),
        }
    }
}

impl Health {
    /// Ready to serve its role.
    pub fn set_ready(&self) {
        *self.not_ready.lock().expect("health lock") = None;
    }

    /// Not ready, and why (shown by `/readyz`).
    pub fn set_not_ready(&self, why: &'static str) {
        *self.not_ready.lock().expect("health lock") = Some(why);
    }

    /// `Ok` when ready, else why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        match *self.not_ready.lock().expect("health lock") {
            None => Ok(()),
            Some(why) => Err(why),
        }
    }
}
