//! Session-store settings, with Tomcat's attribute names.

use crate::error::Result;

/// Session-store configuration (`sendAllSessionsSize`, `stateTransferTimeout`, ...).
#[derive(Debug, Clone, Default)]
pub struct SessionConfig {}

impl SessionConfig {
    /// Sets one session-store key; `Ok(false)` if the key is not one of them.
    ///
    /// # Errors
    /// A bad value for a session-store key.
    pub fn set(&mut self, _key: &str, _value: &str) -> Result<bool> {
        Ok(false)
    }
}
