//! Membership settings, with Tomcat's attribute names.

use crate::error::Result;

/// Membership configuration (`mcastAddr`, `mcastPort`, `staticMembers`, ...).
#[derive(Debug, Clone, Default)]
pub struct MembershipConfig {}

impl MembershipConfig {
    /// Sets one membership key; `Ok(false)` if the key is not a membership key.
    ///
    /// # Errors
    /// A bad value for a membership key.
    pub fn set(&mut self, _key: &str, _value: &str) -> Result<bool> {
        Ok(false)
    }
}
