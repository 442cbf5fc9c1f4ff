//! Periodic directory synchronisation from the Console: a background task beside the request
//! path that fetches Console-shaped projects (`[{"_id","tenantId","environments":[{"envId"}]}]`)
//! and records every new or changed project in one transaction. The Console is authoritative
//! for which company owns a project: when it moves one, the bindings made in the old company on
//! it are removed in the same transaction (see [`Manager::sync_projects`]). Fetches are bounded in size and time; a failed fetch changes nothing.

use super::directory::Project;
use super::manage::Manager;
use crate::net::HttpClient;
use std::time::Duration;

/// Largest accepted answer.
pub const MAX_SYNC_BYTES: usize = 32 * 1024 * 1024;
/// Longest a fetch may take.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a sync failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Fetch, status, size or time.
    #[error("fetch: {0}")]
    Fetch(String),
    /// Not the expected JSON.
    #[error("answer: {0}")]
    Shape(String),
    /// The store refused the batch; nothing was changed.
    #[error("store: {0}")]
    Store(String),
}

#[derive(serde::Deserialize)]
struct ConsoleEnv {
    #[serde(rename = "envId")]
    env_id: String,
}

#[derive(serde::Deserialize)]
struct ConsoleProject {
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "tenantId")]
    tenant_id: String,
    #[serde(default)]
    environments: Vec<ConsoleEnv>,
}

impl ConsoleProject {
    fn into_project(self) -> Option<Project> {
        (!self.id.is_empty() && !self.tenant_id.is_empty()).then(|| Project {
            project_id: self.id,
            company_id: self.tenant_id,
            environments: self.environments.into_iter().map(|e| e.env_id).collect(),
        })
    }
}

/// Parses a Console project list into directory entries.
pub fn parse_projects(bytes: &[u8]) -> Result<Vec<Project>, SyncError> {
    let list: Vec<ConsoleProject> =
        serde_json::from_slice(bytes).map_err(|e| SyncError::Shape(e.to_string()))?;
    Ok(list
        .into_iter()
        .filter_map(ConsoleProject::into_project)
        .collect())
}

/// Parses one Console project (the answer to a project creation).
pub fn parse_project(bytes: &[u8]) -> Result<Project, SyncError> {
    serde_json::from_slice::<ConsoleProject>(bytes)
        .map_err(|e| SyncError::Shape(e.to_string()))?
        .into_project()
        .ok_or_else(|| SyncError::Shape("`_id` and `tenantId` must not be empty".to_owned()))
}

/// One synchronisation; returns how many projects changed.
pub async fn sync_once(
    manager: &Manager,
    client: &HttpClient,
    url: &http::Uri,
    token: Option<&crate::config::Secret>,
) -> Result<usize, SyncError> {
    let bytes = crate::net::fetch_bounded(
        client,
        url,
        token.map(|t| t.expose()),
        MAX_SYNC_BYTES,
        SYNC_TIMEOUT,
    )
    .await
    .map_err(SyncError::Fetch)?;
    manager
        .sync_projects(parse_projects(&bytes)?, crate::util::unix_now())
        .await
        .map_err(|e| SyncError::Store(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_projects_parse_and_junk_is_refused() {
        let p = parse_projects(
            br#"[{"_id":"p1","tenantId":"c1","name":"x","environments":[{"envId":"dev","label":"D"}]},{"_id":"","tenantId":"c1"}]"#,
        )
        .unwrap();
        assert_eq!(
            p,
            vec![Project {
                project_id: "p1".into(),
                company_id: "c1".into(),
                environments: vec!["dev".into()]
            }]
        );
        assert!(parse_projects(br#"{"not":"a list"}"#).is_err());
        assert!(parse_projects(br#"[{"_id":5,"tenantId":"c"}]"#).is_err());
    }
}
