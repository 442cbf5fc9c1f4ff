//! `console:`: the web console served at `/console/`.

use serde::Deserialize;

/// `console:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConsole {
    /// Serve the web console at `/console/`. Default true.
    pub enabled: Option<bool>,
}

impl RawConsole {
    /// Whether the console is served.
    pub(super) fn validate(self) -> bool {
        self.enabled.unwrap_or(true)
    }
}
