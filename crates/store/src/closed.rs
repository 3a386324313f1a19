//! Telling when a redb file is closed: its flag is set only after the
//! database itself has been dropped (its file lock released), not when the
//! last reference goes away, since redb's drop does work of its own and a
//! restart that looked at a reference count alone could find the file still
//! locked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Sets its flag when dropped. Put it after the `Database` in a struct:
/// fields drop in declaration order.
pub(crate) struct ClosedOnDrop(Arc<AtomicBool>);

impl ClosedOnDrop {
    pub(crate) fn new() -> Self {
        Self(Arc::new(AtomicBool::new(false)))
    }

    pub(crate) fn handle(&self) -> FileHandle {
        FileHandle(self.0.clone())
    }
}

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Tells whether a file is still open: it is closed (its lock released, so
/// it can be opened again) once everything that holds it is dropped.
#[derive(Debug, Clone)]
pub struct FileHandle(Arc<AtomicBool>);

impl FileHandle {
    /// Whether anything still holds the file open.
    pub fn is_open(&self) -> bool {
        !self.0.load(Ordering::Acquire)
    }
}
