//! The IAM snapshot the request path reads: role bindings indexed by subject and group, and the
//! directory of projects (project → company, environments).
//!
//! It sits between bearer authentication and the policy: the gateway asks it for the caller's
//! candidate bindings and for the company that owns a project, never the database. Writes go
//! through [`Directory::apply`]: one store transaction, then a new immutable state swapped in
//! with a higher version, which is part of every decision-cache key, so no cached decision
//! outlives the data it was made from.

use crate::model::Binding;
use crate::model::binding_set::BindingSet;
use crate::model::chunks::{ChunkedVec, Pos, SortedChunks};
pub use crate::model::directory::{IamChange, IamData, Project};
use crate::model::interned::{BindingTable, Names, StoredBinding, Sym};
use crate::store::{Store, StoreError};
use arc_swap::ArcSwap;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

type Fast = foldhash::fast::RandomState;

type Bindings = Arc<[Arc<StoredBinding>]>;

/// One published state. Bindings are interned (`interned`) and shared (`Arc`) between the
/// indexes and with the `BindingSet`s handed to requests, so each exists once in memory. The two
/// large tables are copy-on-write chunks (`chunks`): a write copies one pointer per chunk and the
/// chunks it touches, and rebuilds only the index entries of the subjects and groups it touched;
/// the group index and the projects are copied only by a write that changes them. Symbols are
/// dense, so the subject index is a vector indexed by symbol: no hashing on the request path, and
/// at start-up the bindings are read in id order once, which leaves every subject's list sorted
/// without sorting it.
#[derive(Debug, Default)]
struct State {
    version: u64,
    names: Arc<Names>,
    /// Names the table held when it was last built from scratch: all of them in use then.
    names_at_build: usize,
    /// Every binding, sorted by id (8 bytes each; a hash set would take twice that).
    bindings: SortedChunks<Arc<StoredBinding>>,
    by_subject: ChunkedVec<Option<BindingSet>>,
    by_group: Arc<HashMap<Sym, Bindings, Fast>>,
    projects: Arc<HashMap<String, Arc<Project>>>,
}

/// The order of bindings everywhere in the directory.
fn by_id(a: &Arc<StoredBinding>, b: &Arc<StoredBinding>) -> std::cmp::Ordering {
    a.id_bytes().cmp(b.id_bytes())
}

/// Where the binding `id` is (or would go) in the id-sorted table.
fn position(list: &SortedChunks<Arc<StoredBinding>>, id: &str) -> Result<Pos, Pos> {
    list.search(|b| b.id_bytes().cmp(id.as_bytes()))
}

impl State {
    fn from_data(data: IamData) -> Self {
        let BindingTable { names, list } = data.bindings;
        let names = Arc::new(names);
        let mut bindings: Vec<Arc<StoredBinding>> = list.into_iter().map(Arc::new).collect();
        // Stable, so of two rows with one id the later stays last and wins, as a write would.
        bindings.sort_by(by_id);
        let mut unique: Vec<Arc<StoredBinding>> = Vec::with_capacity(bindings.len());
        for b in bindings {
            match unique.last_mut() {
                Some(last) if last.id_bytes() == b.id_bytes() => *last = b,
                _ => unique.push(b),
            }
        }
        let bindings = unique;
        let projects = data
            .projects
            .into_iter()
            .map(|p| (p.project_id.clone(), Arc::new(p)))
            .collect();
        // A name listed twice in one binding still indexes it once.
        let mut counts = vec![0u32; names.len()];
        for b in &bindings {
            for s in b.subjects().distinct() {
                if let Some(c) = counts.get_mut(s as usize) {
                    *c += 1;
                }
            }
        }
        let mut lists: Vec<Vec<Arc<StoredBinding>>> = counts
            .iter()
            .map(|&c| Vec::with_capacity(c as usize))
            .collect();
        drop(counts);
        let mut groups: HashMap<Sym, Vec<Arc<StoredBinding>>, Fast> = HashMap::default();
        for b in &bindings {
            for s in b.subjects().distinct() {
                if let Some(list) = lists.get_mut(s as usize) {
                    list.push(b.clone());
                }
            }
            for g in b.groups().distinct() {
                groups.entry(g).or_default().push(b.clone());
            }
        }
        // Pushed in id order: already sorted.
        let by_subject = lists
            .into_iter()
            .map(|list| (!list.is_empty()).then(|| BindingSet::stored(list, names.list().clone())))
            .collect();
        Self {
            version: 0,
            names_at_build: names.len(),
            names,
            bindings: SortedChunks::from_sorted(bindings),
            by_subject: ChunkedVec::from_vec(by_subject),
            by_group: Arc::new(groups.into_iter().map(|(g, l)| (g, l.into())).collect()),
            projects: Arc::new(projects),
        }
    }

    fn subject(&self, s: Sym) -> Option<&BindingSet> {
        self.by_subject.get(s as usize).and_then(Option::as_ref)
    }

    /// The next state: this one with `changes` applied. Costs one pointer copy per chunk plus
    /// work proportional to the change, never a copy of every binding or index entry. A name the
    /// table lacks copies one shard of its index and is appended to the shared list.
    fn with(&self, changes: Vec<IamChange>) -> Self {
        let mut names = self.names.clone();
        let mut bindings = self.bindings.clone();
        let mut projects = self.projects.clone();
        // Bindings put or deleted, and the subjects and groups whose index entries they change
        // (those of the old version and of the new one).
        let mut changed = HashSet::new();
        let mut subjects = HashSet::new();
        let mut groups = HashSet::new();
        let mut touch = |b: &StoredBinding| {
            subjects.extend(b.subjects().iter());
            groups.extend(b.groups().iter());
        };
        for change in changes {
            match change {
                IamChange::PutBinding(b) => {
                    // The index is copied (once per write) only for a binding with a new name;
                    // readers of the current state keep the old copy.
                    let stored = Arc::new(if names.covers(&b) {
                        StoredBinding::resolve(&b, &names)
                    } else {
                        StoredBinding::new(&b, Arc::make_mut(&mut names))
                    });
                    touch(&stored);
                    match position(&bindings, &b.binding_id) {
                        Ok(at) => {
                            if let Some(old) = bindings.replace(at, stored) {
                                touch(&old);
                            }
                        }
                        Err(at) => bindings.insert(at, stored),
                    }
                    changed.insert(b.binding_id);
                }
                IamChange::DeleteBinding(id) => {
                    if let Some(old) = position(&bindings, &id)
                        .ok()
                        .and_then(|at| bindings.remove(at))
                    {
                        touch(&old);
                    }
                    changed.insert(id);
                }
                IamChange::PutProject(p) => {
                    Arc::make_mut(&mut projects).insert(p.project_id.clone(), Arc::new(p));
                }
                IamChange::DeleteProject(id) => {
                    Arc::make_mut(&mut projects).remove(&id);
                }
            }
        }
        let fresh: Vec<&Arc<StoredBinding>> = changed
            .iter()
            .filter_map(|id| bindings.get(position(&bindings, id).ok()?))
            .collect();
        // An entry's new list: its old bindings that did not change, plus the changed ones
        // (in their new version) that name it.
        let rebuild = |old: &[Arc<StoredBinding>], names: &dyn Fn(&StoredBinding) -> bool| {
            let mut list: Vec<Arc<StoredBinding>> = old
                .iter()
                .filter(|b| !changed.contains(b.id()))
                .cloned()
                .collect();
            list.extend(fresh.iter().filter(|b| names(b)).map(|b| (*b).clone()));
            list.sort_unstable_by(by_id);
            list
        };
        let mut by_subject = self.by_subject.clone();
        by_subject.grow(names.len(), None);
        for s in subjects {
            let Some(slot) = by_subject.get_mut(s as usize) else {
                continue;
            };
            let list = rebuild(slot.as_ref().map_or(&[], |o| o.as_slice()), &|b| {
                b.subjects().contains(s)
            });
            *slot = (!list.is_empty()).then(|| BindingSet::stored(list, names.list().clone()));
        }
        let mut by_group = self.by_group.clone();
        for g in groups {
            let by_group = Arc::make_mut(&mut by_group);
            let old = by_group.remove(&g).unwrap_or_default();
            let list = rebuild(&old, &|b| b.groups().contains(g));
            if !list.is_empty() {
                by_group.insert(g, list.into());
            }
        }
        Self {
            version: 0,
            names_at_build: self.names_at_build,
            names,
            bindings,
            by_subject,
            by_group,
            projects,
        }
    }

    /// Whether enough names of deleted bindings accumulated to rebuild: once the table has grown
    /// past twice its size at the last build (plus a floor, so a small directory is not rebuilt
    /// every few writes). Names are append-only, so without this every account ever created
    /// would keep its name, index entry and subject slot for the life of the process; with it
    /// they cost a rebuild amortised over at least as many new names as there are live ones.
    fn wants_compaction(&self) -> bool {
        self.names.len() > 2 * self.names_at_build + COMPACTION_FLOOR
    }

    /// The same bindings and projects in a table built from scratch, holding only the names in
    /// use. Costs what loading the directory at start-up costs.
    fn compacted(&self) -> Self {
        let mut table = BindingTable::with_capacity(self.bindings.len());
        for b in self.bindings.iter() {
            table.push(&b.expand(self.names.list()));
        }
        Self::from_data(IamData {
            bindings: table,
            projects: self.projects.values().map(|p| (**p).clone()).collect(),
        })
    }
}

/// New names, beyond twice those in use at the last build, that trigger a rebuild.
const COMPACTION_FLOOR: usize = 4096;

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
        let own = state.names.get(subject).and_then(|s| state.subject(s));
        let group_lists: Vec<&Bindings> = groups
            .iter()
            .filter_map(|g| state.names.get(g))
            .filter_map(|g| state.by_group.get(&g))
            .collect();
        if group_lists.is_empty() {
            return own.cloned().unwrap_or_default();
        }
        let mut list: Vec<Arc<StoredBinding>> =
            own.map(|o| o.as_slice().to_vec()).unwrap_or_default();
        for l in group_lists {
            for b in l.iter() {
                if !list.iter().any(|x| Arc::ptr_eq(x, b)) {
                    list.push(b.clone());
                }
            }
        }
        BindingSet::stored(list, state.names.list().clone())
    }

    /// A project, if known.
    pub fn project(&self, project_id: &str) -> Option<Arc<Project>> {
        self.state.load().projects.get(project_id).cloned()
    }

    /// A binding by id.
    pub fn binding(&self, binding_id: &str) -> Option<Binding> {
        let state = self.state.load();
        let at = position(&state.bindings, binding_id).ok()?;
        state.bindings.get(at).map(|b| b.expand(state.names.list()))
    }

    /// The bindings naming `name` among their subjects, or among their groups when `group`, in id
    /// order (management; read from the indexes, so it costs what it returns at any scale).
    pub fn bindings_naming(&self, name: &str, group: bool) -> Vec<Binding> {
        let state = self.state.load();
        let Some(sym) = state.names.get(name) else {
            return Vec::new();
        };
        let list: &[Arc<StoredBinding>] = if group {
            state.by_group.get(&sym).map_or(&[], |l| l)
        } else {
            state.subject(sym).map_or(&[], |set| set.as_slice())
        };
        list.iter().map(|b| b.expand(state.names.list())).collect()
    }

    /// The bindings on `company`, its projects and their environments (those [`Self::company_of`]
    /// places in it), in id order. One pass over the interned table comparing symbols, with
    /// only the company's own bindings expanded (~300 ms at a million bindings expanding them
    /// all and filtering, as the management API did before).
    pub fn bindings_in_company(&self, company: &str) -> Vec<Binding> {
        let state = self.state.load();
        let names = &state.names;
        let projects: HashSet<&str> = state
            .projects
            .values()
            .filter(|p| p.company_id == company)
            .map(|p| p.project_id.as_str())
            .collect();
        // Symbols are dense: per-symbol tables answer without hashing on the million-binding pass.
        let mut in_project = vec![false; names.len()];
        for s in projects.iter().filter_map(|p| names.get(p)) {
            if let Some(slot) = in_project.get_mut(s as usize) {
                *slot = true;
            }
        }
        let company_sym = names.get(company);
        let [company_t, project_t, env_t] =
            ["company", "project", "environment"].map(|t| names.get(t));
        // An environment id names its project before the colon; decided once per distinct id
        // (0: not yet, 1: inside, 2: outside).
        let mut envs = vec![0u8; names.len()];
        let mut out = Vec::new();
        for b in state.bindings.iter() {
            // Made in another company (or at console level): never this company's, even on a
            // project the directory now gives to it.
            let Some((t, id, Some(made_in))) = b.resource() else {
                continue;
            };
            if Some(made_in) != company_sym {
                continue;
            }
            let t = Some(t);
            let inside = if t == company_t {
                Some(id) == company_sym
            } else if t == project_t {
                in_project.get(id as usize).copied().unwrap_or(false)
            } else if t == env_t {
                match envs.get_mut(id as usize) {
                    Some(seen @ 0) => {
                        let inside = names
                            .name(id)
                            .split_once(':')
                            .is_some_and(|(p, _)| projects.contains(p));
                        *seen = if inside { 1 } else { 2 };
                        inside
                    }
                    Some(seen) => *seen == 1,
                    None => false,
                }
            } else {
                false
            };
            if inside {
                out.push(b.expand(names.list()));
            }
        }
        out
    }

    /// The bindings in the form of an earlier version, which [`Manager::upgrade_bindings`]
    /// rewrites: without a resource, with a resource naming no company (other than the console
    /// level), or naming a subject or group that is not a principal with an issuer. One pass
    /// comparing names; only those found are expanded.
    ///
    /// [`Manager::upgrade_bindings`]: super::manage::Manager::upgrade_bindings
    pub fn legacy_bindings(&self) -> Vec<Binding> {
        use crate::model::binding::{GROUP_PREFIX, SERVICE_ACCOUNT_PREFIX, USER_PREFIX};
        let state = self.state.load();
        let names = state.names.list();
        let typed_subject = |s: &str| {
            s.starts_with(SERVICE_ACCOUNT_PREFIX)
                || (s.starts_with(USER_PREFIX) && !s[USER_PREFIX.len()..].starts_with(':'))
        };
        let typed_group =
            |g: &str| g.starts_with(GROUP_PREFIX) && !g[GROUP_PREFIX.len()..].starts_with(':');
        state
            .bindings
            .iter()
            .filter(|b| {
                let resource_ok = b
                    .resource()
                    .is_some_and(|(t, _, company)| company.is_some() || names.name(t) == "console");
                !resource_ok
                    || !b.subjects().iter().all(|s| typed_subject(names.name(s)))
                    || !b.groups().iter().all(|g| typed_group(names.name(g)))
            })
            .map(|b| b.expand(names))
            .collect()
    }

    /// Every binding (management listings; not for the request path).
    pub fn all_bindings(&self) -> Vec<Binding> {
        let state = self.state.load();
        // Already in id order.
        state
            .bindings
            .iter()
            .map(|b| b.expand(state.names.list()))
            .collect()
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

    /// Publishes changes read from the store after another instance committed them, unless a
    /// local write was published since `version` was read (the rows may predate it); returns
    /// whether it published.
    pub async fn publish_if(&self, version: u64, changes: Vec<IamChange>) -> bool {
        let _guard = self.writer.lock().await;
        if self.state.load().version != version {
            return false;
        }
        self.publish_locked(changes);
        true
    }

    /// Publishes changes another writer already committed (in its own batch).
    pub async fn publish(&self, changes: Vec<IamChange>) -> u64 {
        let _guard = self.writer.lock().await;
        self.publish_locked(changes)
    }

    fn publish_locked(&self, changes: Vec<IamChange>) -> u64 {
        let mut next = self.state.load().with(changes);
        if next.wants_compaction() {
            next = next.compacted();
        }
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

    /// The company a binding's resource belongs to: the company it was made in, while the
    /// directory still gives the project to that company. `None` for console-level bindings,
    /// unknown projects and bindings on a project another company owns now.
    pub fn company_of(&self, b: &Binding) -> Option<String> {
        let r = b.resource.as_ref()?;
        let made_in = r.company_id.as_deref()?;
        let owner = match r.resource_type.as_str() {
            "company" => Some(r.resource_id.clone()),
            "project" => self.project(&r.resource_id).map(|p| p.company_id.clone()),
            "environment" => {
                let (p, _) = r.resource_id.split_once(':')?;
                self.project(p).map(|p| p.company_id.clone())
            }
            _ => None,
        }?;
        (owner == made_in).then_some(owner)
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
            resource: Some(BindingResource::scoped("company", "c1", "c1")),
        }
    }

    async fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("db"))
            .await
            .unwrap();
        (dir, Arc::new(store))
    }

    #[tokio::test]
    async fn indexed_management_queries_equal_a_filter_over_every_binding() {
        let (_dir, store) = sqlite().await;
        let d = Directory::load(store).await.unwrap();
        let project = |id: &str, company: &str| {
            IamChange::PutProject(Project {
                project_id: id.into(),
                company_id: company.into(),
                environments: vec!["dev".into()],
            })
        };
        // Made in the company that owns the resource (c1 unless it is p3's or c2 itself).
        let on = |id: &str, subjects: &[&str], groups: &[&str], at: Option<(&str, &str)>| {
            let made_in = |r: &str| {
                if r == "c2" || r.starts_with("p3") {
                    "c2"
                } else {
                    "c1"
                }
            };
            let mut b = binding(id, subjects, groups, "developer");
            b.resource = at.map(|(t, r)| BindingResource::scoped(t, r, made_in(r)));
            IamChange::PutBinding(b)
        };
        // Made in c2 on c1's project (as before a move): in neither company.
        let mut stale = binding("l", &["sa3"], &[], "developer");
        stale.resource = Some(BindingResource::scoped("project", "p1", "c2"));
        d.apply(vec![
            project("p1", "c1"),
            project("p2", "c1"),
            project("p3", "c2"),
            on("a", &["sa1"], &[], Some(("company", "c1"))),
            on("b", &["sa1", "sa2"], &["ops"], Some(("project", "p1"))),
            // An environment the project does not list still belongs to its company.
            on("c", &["sa2"], &[], Some(("environment", "p2:unlisted"))),
            on("d", &["sa1"], &["ops"], Some(("company", "c2"))),
            on("e", &["sa3"], &[], Some(("project", "p3"))),
            on("f", &["sa3"], &[], Some(("environment", "p3:dev"))),
            // Console-level, unknown project, malformed environment, unknown resource type.
            on("g", &["sa1"], &["ops"], None),
            on("h", &["sa1"], &[], Some(("project", "unknown"))),
            on("i", &["sa1"], &[], Some(("environment", "p1"))),
            on("j", &["sa1"], &[], Some(("team", "c1"))),
            on("k", &[], &["ops"], Some(("environment", "p1:dev"))),
            IamChange::PutBinding(stale),
        ])
        .await
        .unwrap();
        let all = d.all_bindings();
        let ids = |bs: Vec<Binding>| bs.into_iter().map(|b| b.binding_id).collect::<Vec<_>>();
        for company in ["c1", "c2", "c3", "p1"] {
            let expected: Vec<Binding> = all
                .iter()
                .filter(|b| d.company_of(b).as_deref() == Some(company))
                .cloned()
                .collect();
            assert_eq!(d.bindings_in_company(company), expected, "{company}");
        }
        assert_eq!(ids(d.bindings_in_company("c1")), ["a", "b", "c", "k"]);
        assert_eq!(ids(d.bindings_in_company("c2")), ["d", "e", "f"]);
        for (name, group) in [
            ("sa1", false),
            ("sa2", false),
            ("ops", true),
            ("ops", false),
            ("nobody", false),
        ] {
            let expected: Vec<Binding> = all
                .iter()
                .filter(|b| {
                    if group { &b.groups } else { &b.subjects }
                        .iter()
                        .any(|s| s == name)
                })
                .cloned()
                .collect();
            assert_eq!(d.bindings_naming(name, group), expected, "{name}");
        }
        assert_eq!(
            ids(d.bindings_naming("sa1", false)),
            ["a", "b", "d", "g", "h", "i", "j"]
        );
    }

    #[tokio::test]
    async fn names_of_deleted_bindings_do_not_accumulate() {
        let (_dir, store) = sqlite().await;
        let d = Directory::load(store).await.unwrap();
        let keep = binding("keep", &["sa-keep"], &["ops"], "guest");
        d.publish(vec![
            IamChange::PutBinding(keep.clone()),
            IamChange::PutProject(Project {
                project_id: "p1".into(),
                company_id: "c1".into(),
                environments: vec!["dev".into()],
            }),
        ])
        .await;
        // A set handed out before any rebuild stays readable after it.
        let early = d.bindings_for("sa-keep", &[]);
        // Accounts created and deleted, each with a name never seen before.
        for i in 0..3 * COMPACTION_FLOOR {
            let id = format!("churn{i}");
            let b = binding(&id, &[&format!("sa{i}")], &[], "guest");
            d.publish(vec![IamChange::PutBinding(b)]).await;
            d.publish(vec![IamChange::DeleteBinding(id)]).await;
        }
        let state = d.state.load();
        assert!(
            state.names.len() <= 2 * state.names_at_build + COMPACTION_FLOOR,
            "{} names, {} at the last build",
            state.names.len(),
            state.names_at_build
        );
        assert_eq!(state.names.get("sa0"), None);
        assert_eq!(d.all_bindings(), vec![keep.clone()]);
        assert_eq!(d.bindings_for("sa-keep", &["ops".into()]).len(), 1);
        assert_eq!(d.bindings_for("nobody", &["ops".into()]).len(), 1);
        assert!(d.project("p1").is_some());
        assert_eq!(early.as_slice()[0].expand(early.names()), keep);
    }

    #[tokio::test]
    async fn sets_built_by_separate_writes_share_one_name_list() {
        // Each write adds a name; every subject's set must point at the one shared list, not at
        // a copy of its own version's (which once held up to a thousand pointers per set).
        let (_dir, store) = sqlite().await;
        let d = Directory::load(store).await.unwrap();
        for i in 0..2000 {
            let b = binding(&format!("b{i}"), &[&format!("sa{i}")], &[], "guest");
            d.publish(vec![IamChange::PutBinding(b)]).await;
        }
        let state = d.state.load();
        let list: &crate::model::interned::NameList = state.names.list();
        for i in 0..2000 {
            let set = d.bindings_for(&format!("sa{i}"), &[]);
            assert!(
                std::ptr::eq(set.names(), list),
                "sa{i} holds a list of its own"
            );
            assert_eq!(set.as_slice()[0].id(), format!("b{i}"));
        }
    }

    #[tokio::test]
    async fn writes_persist_publish_and_bump_the_version() {
        let (_dir, store) = sqlite().await;
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
        assert_eq!(d.bindings_for("sa1", &[]).len(), 1);
        assert_eq!(d.bindings_for("sa1", &["ops".into()]).len(), 2);
        assert_eq!(d.bindings_for("other", &[]).len(), 0);
        assert_eq!(d.binding("b2").unwrap().groups, vec!["ops".to_owned()]);
        assert_eq!(d.all_bindings().len(), 2);
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
        let ids = |set: &BindingSet| -> Vec<String> { set.ids().map(str::to_owned).collect() };
        let subject = |st: &State, s: &str| st.names.get(s).and_then(|s| st.subject(s)).map(ids);
        let group = |st: &State, g: &str| {
            st.names
                .get(g)
                .and_then(|g| st.by_group.get(&g))
                .map(|l| l.iter().map(|b| b.id().to_owned()).collect::<Vec<_>>())
        };
        let mut state = State::default();
        let mut all: HashMap<String, Binding> = HashMap::new();
        // Puts, replacements that move a binding between subjects and groups, deletes, and
        // subjects that appear only after the first states (new names on a write).
        let subjects = ["a", "b", "c", "d"];
        let groups = ["g1", "g2"];
        for step in 0..60usize {
            let id = format!("b{}", step % 7);
            let change = if step % 5 == 4 {
                all.remove(&id);
                IamChange::DeleteBinding(id)
            } else {
                let b = binding(
                    &id,
                    &[
                        subjects[step % 3],
                        subjects[(step / 3) % 3 + usize::from(step > 30)],
                    ],
                    &[groups[step % 2]],
                    "guest",
                );
                all.insert(id, b.clone());
                IamChange::PutBinding(b)
            };
            state = state.with(vec![change]);
            let scratch = State::from_data(IamData {
                bindings: all.values().collect(),
                projects: vec![],
            });
            for s in subjects {
                assert_eq!(
                    subject(&state, s),
                    subject(&scratch, s),
                    "subject {s} after step {step}"
                );
            }
            for g in groups {
                assert_eq!(group(&state, g), group(&scratch, g), "group {g}");
            }
            assert_eq!(state.bindings.len(), all.len());
            let mut expected: Vec<Binding> = all.values().cloned().collect();
            expected.sort_by(|a, b| a.binding_id.cmp(&b.binding_id));
            let got: Vec<Binding> = state
                .bindings
                .iter()
                .map(|b| b.expand(state.names.list()))
                .collect();
            assert_eq!(got, expected, "bindings after step {step}");
        }
    }

    #[test]
    fn writes_across_many_chunks_match_a_rebuild_and_leave_the_old_state_as_it_was() {
        let listing = |st: &State| -> Vec<Binding> {
            st.bindings
                .iter()
                .map(|b| b.expand(st.names.list()))
                .collect()
        };
        let subject_ids = |st: &State, s: &str| -> Vec<String> {
            st.names
                .get(s)
                .and_then(|s| st.subject(s))
                .map(|set| set.ids().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        // Enough bindings and names for several chunks of each table.
        let mut all: std::collections::BTreeMap<String, Binding> = (0..5000)
            .map(|i| {
                let b = binding(
                    &format!("b{i:05}"),
                    &[&format!("s{}", i % 1500)],
                    &[],
                    "guest",
                );
                (b.binding_id.clone(), b)
            })
            .collect();
        let base = State::from_data(IamData {
            bindings: all.values().collect(),
            projects: vec![],
        });
        let before = listing(&base);
        let mut state = base.with(vec![]);
        for step in 0..3000usize {
            let change = match step % 4 {
                // Deletes run through whole chunks, which empties some.
                0 | 1 => {
                    let id = format!("b{:05}", step);
                    all.remove(&id);
                    IamChange::DeleteBinding(id)
                }
                // Inserts between existing ids, with names never seen before.
                2 => {
                    let b = binding(
                        &format!("b{:05}x", step * 7 % 5000),
                        &[&format!("new{step}")],
                        &[],
                        "guest",
                    );
                    all.insert(b.binding_id.clone(), b.clone());
                    IamChange::PutBinding(b)
                }
                _ => {
                    let b = binding(
                        &format!("b{:05}", 4999 - step),
                        &[&format!("s{}", step % 7)],
                        &[],
                        "admin",
                    );
                    all.insert(b.binding_id.clone(), b.clone());
                    IamChange::PutBinding(b)
                }
            };
            state = state.with(vec![change]);
        }
        let scratch = State::from_data(IamData {
            bindings: all.values().collect(),
            projects: vec![],
        });
        assert_eq!(listing(&state), all.values().cloned().collect::<Vec<_>>());
        for s in (0..1500)
            .map(|i| format!("s{i}"))
            .chain((2..3000).step_by(4).map(|i| format!("new{i}")))
        {
            assert_eq!(subject_ids(&state, &s), subject_ids(&scratch, &s), "{s}");
        }
        assert_eq!(listing(&base), before);
        assert_eq!(subject_ids(&base, "s3").len(), 4);
        assert!(base.names.get("new2").is_none());
    }

    #[test]
    fn a_write_with_known_names_shares_the_names_table() {
        let state = State::from_data(IamData {
            bindings: [&binding("b1", &["sa1"], &["ops"], "guest")]
                .into_iter()
                .collect(),
            projects: vec![],
        });
        let same = state.with(vec![IamChange::PutBinding(binding(
            "b2",
            &["sa1"],
            &[],
            "guest",
        ))]);
        assert!(Arc::ptr_eq(&state.names, &same.names));
        let grown = same.with(vec![IamChange::PutBinding(binding(
            "b3",
            &["sa2"],
            &[],
            "guest",
        ))]);
        assert!(!Arc::ptr_eq(&same.names, &grown.names));
        assert_eq!(grown.names.len(), same.names.len() + 1);
        // Older symbols keep their names in the grown table.
        let sa1 = same.names.get("sa1").unwrap();
        assert_eq!(grown.names.name(sa1), "sa1");
        assert_eq!(grown.subject(sa1).unwrap().len(), 2);
    }

    #[test]
    fn a_duplicated_row_keeps_the_later_one_and_a_doubled_subject_indexes_once() {
        let mut first = binding("b1", &["sa1"], &[], "guest");
        first.roles = vec!["guest".into()];
        let second = binding("b1", &["sa1", "sa1"], &["ops", "ops"], "developer");
        let state = State::from_data(IamData {
            bindings: [&first, &second].into_iter().collect(),
            projects: vec![],
        });
        assert_eq!(state.bindings.len(), 1);
        assert_eq!(
            state
                .bindings
                .get((0, 0))
                .unwrap()
                .expand(state.names.list()),
            second
        );
        let sa1 = state.names.get("sa1").unwrap();
        assert_eq!(state.subject(sa1).unwrap().len(), 1);
        let ops = state.names.get("ops").unwrap();
        assert_eq!(state.by_group[&ops].len(), 1);
    }
}
