//! The IAM snapshot the request path reads: role bindings indexed by subject and group, and the
//! directory of projects (project → company, environments).
//!
//! It sits between bearer authentication and the policy: the gateway asks it for the caller's
//! candidate bindings and for the company that owns a project, never the database. Writes go
//! through [`Directory::apply`]: one store transaction, then a new immutable state swapped in
//! with a higher version, which is part of every decision-cache key, so no cached decision
//! outlives the data it was made from.

use super::Binding;
use crate::policy::input::BindingSet;
use crate::store::{Store, StoreError};
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A project known to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Project {
    /// The project's `_id`.
    pub project_id: String,
    /// The owning company (`tenantId`).
    pub company_id: String,
    /// Its environments' `envId`s (may be empty when unknown).
    #[serde(default)]
    pub environments: Vec<String>,
}

/// Everything the store holds for the IAM snapshot.
#[derive(Debug, Clone, Default)]
pub struct IamData {
    /// Every binding.
    pub bindings: Vec<Binding>,
    /// Every known project.
    pub projects: Vec<Project>,
}

/// One write to bindings or the directory; a batch is applied in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IamChange {
    /// Insert or replace a binding.
    PutBinding(Binding),
    /// Remove a binding by id.
    DeleteBinding(String),
    /// Insert or replace a project.
    PutProject(Project),
    /// Remove a project by id.
    DeleteProject(String),
}

/// One published state. Bindings are shared (`Arc`) between the indexes and with the
/// `BindingSet`s handed to requests, so each exists once in memory; a write clones the maps'
/// pointers and rebuilds only the index entries of the subjects and groups it touched.
#[derive(Debug, Default)]
struct State {
    version: u64,
    bindings: HashMap<String, Arc<Binding>>,
    by_subject: HashMap<String, BindingSet>,
    by_group: HashMap<String, Vec<Arc<Binding>>>,
    projects: HashMap<String, Arc<Project>>,
}

impl State {
    fn from_data(data: IamData) -> Self {
        let mut bindings: HashMap<String, Arc<Binding>> =
            HashMap::with_capacity(data.bindings.len());
        for b in data.bindings {
            bindings.insert(b.binding_id.clone(), Arc::new(b));
        }
        let projects = data
            .projects
            .into_iter()
            .map(|p| (p.project_id.clone(), Arc::new(p)))
            .collect();
        let mut subject_lists: HashMap<String, Vec<Arc<Binding>>> = HashMap::new();
        let mut by_group: HashMap<String, Vec<Arc<Binding>>> = HashMap::new();
        // A name listed twice in one binding still indexes it once.
        let push = |list: &mut Vec<Arc<Binding>>, b: &Arc<Binding>| {
            if !list.last().is_some_and(|l| Arc::ptr_eq(l, b)) {
                list.push(b.clone());
            }
        };
        for b in bindings.values() {
            for s in &b.subjects {
                push(subject_lists.entry(s.clone()).or_default(), b);
            }
            for g in &b.groups {
                push(by_group.entry(g.clone()).or_default(), b);
            }
        }
        let by_subject = subject_lists
            .into_iter()
            .map(|(s, list)| (s, subject_set(list)))
            .collect();
        for list in by_group.values_mut() {
            list.sort_by(|a, b| a.binding_id.cmp(&b.binding_id));
        }
        Self {
            version: 0,
            bindings,
            by_subject,
            by_group,
            projects,
        }
    }

    /// The next state: this one with `changes` applied. Costs one pointer copy per binding plus
    /// work proportional to the change, never a rebuild of every index entry.
    fn with(&self, changes: Vec<IamChange>) -> Self {
        let mut bindings = self.bindings.clone();
        let mut projects = self.projects.clone();
        // Bindings put or deleted, and the subjects and groups whose index entries they change
        // (those of the old version and of the new one).
        let mut changed = std::collections::HashSet::new();
        let mut subjects = std::collections::HashSet::new();
        let mut groups = std::collections::HashSet::new();
        let mut touch = |b: &Binding| {
            subjects.extend(b.subjects.iter().cloned());
            groups.extend(b.groups.iter().cloned());
        };
        for change in changes {
            match change {
                IamChange::PutBinding(b) => {
                    touch(&b);
                    changed.insert(b.binding_id.clone());
                    if let Some(old) = bindings.insert(b.binding_id.clone(), Arc::new(b)) {
                        touch(&old);
                    }
                }
                IamChange::DeleteBinding(id) => {
                    if let Some(old) = bindings.remove(&id) {
                        touch(&old);
                    }
                    changed.insert(id);
                }
                IamChange::PutProject(p) => {
                    projects.insert(p.project_id.clone(), Arc::new(p));
                }
                IamChange::DeleteProject(id) => {
                    projects.remove(&id);
                }
            }
        }
        let fresh: Vec<&Arc<Binding>> = changed.iter().filter_map(|id| bindings.get(id)).collect();
        // An entry's new list: its old bindings that did not change, plus the changed ones
        // (in their new version) that name it.
        let rebuild = |old: &[Arc<Binding>], names: &dyn Fn(&Binding) -> bool| {
            let mut list: Vec<Arc<Binding>> = old
                .iter()
                .filter(|b| !changed.contains(&b.binding_id))
                .cloned()
                .collect();
            list.extend(fresh.iter().filter(|b| names(b)).map(|b| (*b).clone()));
            list.sort_by(|a, b| a.binding_id.cmp(&b.binding_id));
            list
        };
        let mut by_subject = self.by_subject.clone();
        for s in subjects {
            let old = by_subject.remove(&s);
            let list = rebuild(old.as_ref().map_or(&[], |o| o.as_slice()), &|b| {
                b.subjects.contains(&s)
            });
            if !list.is_empty() {
                by_subject.insert(s, BindingSet::shared(list));
            }
        }
        let mut by_group = self.by_group.clone();
        for g in groups {
            let old = by_group.remove(&g).unwrap_or_default();
            let list = rebuild(&old, &|b| b.groups.contains(&g));
            if !list.is_empty() {
                by_group.insert(g, list);
            }
        }
        Self {
            version: 0,
            bindings,
            by_subject,
            by_group,
            projects,
        }
    }
}

/// A subject's bindings in binding-id order (a stable policy input).
fn subject_set(mut list: Vec<Arc<Binding>>) -> BindingSet {
    list.sort_by(|a, b| a.binding_id.cmp(&b.binding_id));
    BindingSet::shared(list)
}

/// Shared, lock-free view of bindings and projects, and their one writer.
#[derive(Clone)]
pub struct Directory {
    store: Arc<dyn Store>,
    state: Arc<ArcSwap<State>>,
    versions: Arc<AtomicU64>,
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.load();
        f.debug_struct("Directory")
            .field("version", &s.version)
            .field("bindings", &s.bindings.len())
            .field("projects", &s.projects.len())
            .finish()
    }
}

impl Directory {
    /// Loads every binding and project from `store`.
    pub async fn load(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let data = store.load_iam().await?;
        let mut state = State::from_data(data);
        state.version = 1;
        Ok(Self {
            store,
            state: Arc::new(ArcSwap::from_pointee(state)),
            versions: Arc::new(AtomicU64::new(1)),
            writer: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Version of the current state; changes on every applied write.
    pub fn version(&self) -> u64 {
        self.state.load().version
    }

    /// The bindings that may apply to a caller: those naming it, and those of its groups. The
    /// policy decides which actually apply; this only narrows the candidates.
    pub fn bindings_for(&self, subject: &str, groups: &[String]) -> BindingSet {
        let state = self.state.load();
        let own = state.by_subject.get(subject);
        let group_lists: Vec<&Vec<Arc<Binding>>> = groups
            .iter()
            .filter_map(|g| state.by_group.get(g))
            .collect();
        if group_lists.is_empty() {
            return own.cloned().unwrap_or_default();
        }
        let mut list: Vec<Arc<Binding>> = own.map(|o| o.as_slice().to_vec()).unwrap_or_default();
        for l in group_lists {
            for b in l {
                if !list.iter().any(|x| x.binding_id == b.binding_id) {
                    list.push(b.clone());
                }
            }
        }
        BindingSet::shared(list)
    }

    /// A project, if known.
    pub fn project(&self, project_id: &str) -> Option<Arc<Project>> {
        self.state.load().projects.get(project_id).cloned()
    }

    /// A binding by id.
    pub fn binding(&self, binding_id: &str) -> Option<Binding> {
        self.state
            .load()
            .bindings
            .get(binding_id)
            .map(|b| (**b).clone())
    }

    /// Every binding (management listings; not for the request path).
    pub fn all_bindings(&self) -> Vec<Binding> {
        let mut v: Vec<Binding> = self
            .state
            .load()
            .bindings
            .values()
            .map(|b| (**b).clone())
            .collect();
        v.sort_by(|a, b| a.binding_id.cmp(&b.binding_id));
        v
    }

    /// Commits `changes` in one transaction, then publishes the new state. Nothing is published
    /// when the transaction fails.
    pub async fn apply(&self, changes: Vec<IamChange>) -> Result<u64, StoreError> {
        // One writer at a time, so states are built on top of each other in commit order.
        let _guard = self.writer.lock().await;
        self.store.apply_iam(changes.clone()).await?;
        Ok(self.publish_locked(changes))
    }

    /// Replaces the whole state with `data` read from the store (resynchronisation), bumping the
    /// version so no cached decision survives it, unless a local write happened since `version`
    /// was read (the data may predate it); returns whether it replaced.
    pub async fn replace_if(&self, version: u64, data: IamData) -> bool {
        let _guard = self.writer.lock().await;
        if self.state.load().version != version {
            return false;
        }
        let mut next = State::from_data(data);
        next.version = self.versions.fetch_add(1, Ordering::SeqCst) + 1;
        self.state.store(Arc::new(next));
        true
    }

    /// Publishes changes another writer already committed (in its own batch).
    pub async fn publish(&self, changes: Vec<IamChange>) -> u64 {
        let _guard = self.writer.lock().await;
        self.publish_locked(changes)
    }

    fn publish_locked(&self, changes: Vec<IamChange>) -> u64 {
        let mut next = self.state.load().with(changes);
        next.version = self.versions.fetch_add(1, Ordering::SeqCst) + 1;
        let version = next.version;
        self.state.store(Arc::new(next));
        version
    }

    /// The projects of `company`, sorted by id.
    pub fn projects_of(&self, company: &str) -> Vec<Arc<Project>> {
        let mut v: Vec<Arc<Project>> = self
            .state
            .load()
            .projects
            .values()
            .filter(|p| p.company_id == company)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.project_id.cmp(&b.project_id));
        v
    }

    /// The company a binding's resource belongs to (through the directory for projects and
    /// environments); `None` for console-level bindings and unknown projects.
    pub fn company_of(&self, b: &Binding) -> Option<String> {
        let r = b.resource.as_ref()?;
        match r.resource_type.as_str() {
            "company" => Some(r.resource_id.clone()),
            "project" => self.project(&r.resource_id).map(|p| p.company_id.clone()),
            "environment" => {
                let (p, _) = r.resource_id.split_once(':')?;
                self.project(p).map(|p| p.company_id.clone())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::BindingResource;

    fn binding(id: &str, subjects: &[&str], groups: &[&str], role: &str) -> Binding {
        Binding {
            binding_id: id.into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            roles: vec![role.into()],
            permissions: vec![],
            resource: Some(BindingResource {
                resource_type: "company".into(),
                resource_id: "c1".into(),
            }),
        }
    }

    #[tokio::test]
    async fn writes_persist_publish_and_bump_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::sqlite::SqliteStore::open(&dir.path().join("db"))
                .await
                .unwrap(),
        );
        let d = Directory::load(store.clone()).await.unwrap();
        let v0 = d.version();
        d.apply(vec![
            IamChange::PutBinding(binding("b1", &["sa1"], &[], "developer")),
            IamChange::PutBinding(binding("b2", &[], &["ops"], "maintainer")),
            IamChange::PutProject(Project {
                project_id: "p1".into(),
                company_id: "c1".into(),
                environments: vec!["dev".into()],
            }),
        ])
        .await
        .unwrap();
        assert!(d.version() > v0);
        assert_eq!(d.bindings_for("sa1", &[]).as_slice().len(), 1);
        assert_eq!(d.bindings_for("sa1", &["ops".into()]).as_slice().len(), 2);
        assert_eq!(d.bindings_for("other", &[]).as_slice().len(), 0);
        assert_eq!(d.project("p1").unwrap().company_id, "c1");

        // A fresh load sees what was committed.
        let again = Directory::load(store).await.unwrap();
        assert_eq!(
            again.bindings_for("sa1", &["ops".into()]).as_slice().len(),
            2
        );
        d.apply(vec![IamChange::DeleteBinding("b1".into())])
            .await
            .unwrap();
        assert_eq!(d.bindings_for("sa1", &[]).as_slice().len(), 0);
    }

    #[test]
    fn incremental_states_equal_a_rebuild_from_scratch() {
        let ids = |set: &BindingSet| -> Vec<String> {
            set.as_slice()
                .iter()
                .map(|b| b.binding_id.clone())
                .collect()
        };
        let mut state = State::default();
        let mut all: HashMap<String, Binding> = HashMap::new();
        // Puts, replacements that move a binding between subjects and groups, and deletes.
        let subjects = ["a", "b", "c"];
        let groups = ["g1", "g2"];
        for step in 0..60usize {
            let id = format!("b{}", step % 7);
            let change = if step % 5 == 4 {
                all.remove(&id);
                IamChange::DeleteBinding(id)
            } else {
                let b = binding(
                    &id,
                    &[subjects[step % 3], subjects[(step / 3) % 3]],
                    &[groups[step % 2]],
                    "guest",
                );
                all.insert(id, b.clone());
                IamChange::PutBinding(b)
            };
            state = state.with(vec![change]);
            let scratch = State::from_data(IamData {
                bindings: all.values().cloned().collect(),
                projects: vec![],
            });
            for s in subjects {
                assert_eq!(
                    state.by_subject.get(s).map(ids),
                    scratch.by_subject.get(s).map(ids),
                    "subject {s} after step {step}"
                );
            }
            for g in groups {
                let names = |m: &HashMap<String, Vec<Arc<Binding>>>| {
                    m.get(g)
                        .map(|l| l.iter().map(|b| b.binding_id.clone()).collect::<Vec<_>>())
                };
                assert_eq!(
                    names(&state.by_group),
                    names(&scratch.by_group),
                    "group {g}"
                );
            }
            assert_eq!(state.bindings.len(), all.len());
        }
    }
}
