//! Requests in flight per client (issue #18 item 3, "sessions"): each
//! authenticated request holds a place under its client's name for as long
//! as it runs (a signing session, a DKG, an export, a read), at most
//! `NodeConfig::client_sessions` at once on this node; past that the client
//! is answered 429 `quota` at once, and other clients are not held.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The places in use, by client.
#[derive(Debug)]
pub(crate) struct Sessions {
    max: usize,
    live: Mutex<HashMap<String, usize>>,
}

impl Sessions {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            live: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for `client`, unless it holds the most already.
    pub(crate) fn take(self: &Arc<Self>, client: &str) -> Option<Session> {
        let mut live = self.lock();
        let n = live.entry(client.to_string()).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Session {
            sessions: self.clone(),
            client: client.to_string(),
        })
    }

    /// The places `client` holds now.
    pub(crate) fn held(&self, client: &str) -> usize {
        self.lock().get(client).copied().unwrap_or(0)
    }
}

/// A place held; given back when dropped.
#[derive(Debug)]
pub(crate) struct Session {
    sessions: Arc<Sessions>,
    client: String,
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut live = self.sessions.lock();
        if let Some(n) = live.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                live.remove(&self.client);
            }
        }
    }
}

impl super::Node {
    /// A place for one of `client`'s requests ([`Sessions`]), or None:
    /// it has `NodeConfig::client_sessions` in flight here already.
    pub(crate) fn client_session(&self, client: &str) -> Option<Session> {
        self.0.sessions.take(client)
    }

    /// Requests `client` has in flight on this node.
    pub fn client_sessions_held(&self, client: &str) -> usize {
        self.0.sessions.held(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_places_and_gets_them_back() {
        let s = Sessions::new(2);
        let a1 = s.take("a").unwrap();
        let a2 = s.take("a").unwrap();
        assert!(s.take("a").is_none(), "a third place");
        // Another client is not held by it.
        let b = s.take("b").unwrap();
        assert_eq!((s.held("a"), s.held("b")), (2, 1));
        drop(a1);
        let a3 = s.take("a").unwrap();
        drop((a2, a3, b));
        assert_eq!((s.held("a"), s.held("b")), (0, 0));
        assert!(s.lock().is_empty(), "no entry left behind");
    }
}
