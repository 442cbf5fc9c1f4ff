//! Role bindings in the data model of the Rönd sidecar used by the Console (field names kept
//! compatible): who (`subjects`, `groups`) holds which `roles` and `permissions` on which
//! `resource`. The directory indexes them for the request path and the policy decides which
//! apply.
//!
//! Two things are stricter than Rönd, because each closed a way in:
//! - subjects and groups are typed principals (see [`Principal`]): a service account, a user of
//!   a named issuer, a group of a named issuer. A bare id matches nobody, so a user whose subject
//!   equals a client id, or two issuers' users with one subject, never share a binding;
//! - a resource names its company (`companyId`): a project or environment binding matches only
//!   while the directory gives the project to that company, and a console-level binding says so
//!   (`resourceType: console`) instead of being a binding whose resource was left out.

use serde::{Deserialize, Serialize};

/// The resource a binding is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BindingResource {
    /// `console`, `company`, `project` or `environment`.
    pub resource_type: String,
    /// The id; an environment's is `"<projectId>:<envId>"`; empty at console level.
    #[serde(default)]
    pub resource_id: String,
    /// The company the binding was made in: the resource itself for a company binding, the
    /// owner of the project for project and environment bindings. Absent at console level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<String>,
}

impl BindingResource {
    /// The console level: the binding counts as a company binding in every company.
    pub fn console() -> Self {
        Self {
            resource_type: "console".to_owned(),
            resource_id: String::new(),
            company_id: None,
        }
    }

    /// A resource at `level` (`company`, `project` or `environment`) of `company`.
    pub fn scoped(level: &str, id: &str, company: &str) -> Self {
        Self {
            resource_type: level.to_owned(),
            resource_id: id.to_owned(),
            company_id: Some(company.to_owned()),
        }
    }
}

/// A role binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Binding {
    /// Unique id.
    pub binding_id: String,
    /// Principals ([`Principal::key`]) of the service accounts and users it applies to.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Principals of the groups it applies to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Role ids.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Direct permissions.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Where it applies. A binding without one applies nowhere (stores written before resources
    /// were explicit are migrated to `console` on start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<BindingResource>,
}

/// What a binding names: the one place that spells principals. A principal's key is
/// `serviceaccount:<clientId>`, `user:<issuer>:<subject>` or `group:<issuer>:<name>`, where
/// `<issuer>` is the configured name of an external issuer (never containing `:`). Keys are what
/// bindings store and what the policy compares (`input.user.principal`,
/// `input.user.groupPrincipals`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A service account, by client id.
    ServiceAccount(String),
    /// A user of an external issuer.
    User {
        /// The issuer's configured name.
        issuer: String,
        /// The subject the issuer gives.
        id: String,
    },
    /// A group of an external issuer.
    Group {
        /// The issuer's configured name.
        issuer: String,
        /// The group's name.
        name: String,
    },
}

/// Key prefix of service accounts.
pub const SERVICE_ACCOUNT_PREFIX: &str = "serviceaccount:";
/// Key prefix of users.
pub const USER_PREFIX: &str = "user:";
/// Key prefix of groups.
pub const GROUP_PREFIX: &str = "group:";

impl Principal {
    /// The key stored in bindings.
    pub fn key(&self) -> String {
        match self {
            Self::ServiceAccount(id) => format!("{SERVICE_ACCOUNT_PREFIX}{id}"),
            Self::User { issuer, id } => format!("{USER_PREFIX}{issuer}:{id}"),
            Self::Group { issuer, name } => format!("{GROUP_PREFIX}{issuer}:{name}"),
        }
    }

    /// Parses a key; `None` for anything else (a bare id names nobody).
    pub fn parse(key: &str) -> Option<Self> {
        if let Some(id) = key.strip_prefix(SERVICE_ACCOUNT_PREFIX) {
            return (!id.is_empty()).then(|| Self::ServiceAccount(id.to_owned()));
        }
        let issuer_and = |rest: &str| {
            rest.split_once(':')
                .filter(|(_, id)| !id.is_empty())
                .map(|(i, id)| (i.to_owned(), id.to_owned()))
        };
        if let Some(rest) = key.strip_prefix(USER_PREFIX) {
            return issuer_and(rest).map(|(issuer, id)| Self::User { issuer, id });
        }
        if let Some(rest) = key.strip_prefix(GROUP_PREFIX) {
            return issuer_and(rest).map(|(issuer, name)| Self::Group { issuer, name });
        }
        None
    }

    /// The key of a service account.
    pub fn service_account(client_id: &str) -> String {
        format!("{SERVICE_ACCOUNT_PREFIX}{client_id}")
    }

    /// Whether this is a group.
    pub fn is_group(&self) -> bool {
        matches!(self, Self::Group { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bare_ids_name_nobody() {
        for p in [
            Principal::ServiceAccount("abc".into()),
            Principal::User {
                issuer: "corp".into(),
                id: "alice:with:colons".into(),
            },
            Principal::Group {
                issuer: "corp".into(),
                name: "devs".into(),
            },
        ] {
            assert_eq!(Principal::parse(&p.key()), Some(p));
        }
        for bare in [
            "abc",
            "",
            "user:",
            "user:corp:",
            "group:x",
            "serviceaccount:",
        ] {
            assert_eq!(Principal::parse(bare), None, "{bare}");
        }
        assert_ne!(
            Principal::User {
                issuer: "a".into(),
                id: "x".into()
            }
            .key(),
            Principal::User {
                issuer: "b".into(),
                id: "x".into()
            }
            .key()
        );
    }
}
