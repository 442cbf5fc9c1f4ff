//! The compact form in which the directory holds role bindings: every name (subject, group,
//! role, permission, resource type and id) interned once as a `u32`, a binding as one small byte
//! array holding its symbols and its id.
//!
//! It sits under [`super::directory`], which serves the request path from it, and over the
//! stores, which fill a [`BindingTable`] row by row at start-up. A million bindings name about a
//! hundred thousand distinct strings: as `String` fields each binding cost ~400 bytes with its
//! index entries; interned it costs about a quarter of that, and start-up allocates four times
//! less. [`Binding`], the API and storage model, is rebuilt from here only off the request path
//! (management reads) or once per caller and change (the policy value, memoised by
//! `BindingSet`).

use super::chunks::{Keyed, ShardedMap};
use super::{Binding, BindingResource};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A name's symbol in a [`Names`] table.
pub type Sym = u32;

/// Slots in the first segment of a [`NameList`]; each further segment doubles.
const BASE: usize = 1024;

/// Segments of a [`NameList`]: `BASE * (2^SEGMENTS - 1)` slots, more than a `Sym` can number.
const SEGMENTS: usize = 23;

/// One segment's slots, allocated when the first name reaches it.
type Segment = OnceLock<Box<[OnceLock<Arc<str>>]>>;

/// The names by symbol, appended to in place and shared by every version of the directory built
/// on top of one another. A binding set keeps the list its bindings were interned in alive: one
/// pointer. When each version held a list of its own (copying the last partial block), every
/// binding set built by a write pinned its own copy of up to a thousand pointers, so ten
/// thousand accounts created one by one through the API held hundreds of megabytes.
///
/// Slots are written once and read without a lock; appends take a short lock and go only to the
/// end, so two tables that diverged (a version extended twice, as tests do) never write the same
/// slot: the second copies the names it shares instead (`Names::intern`).
#[derive(Default)]
pub struct NameList {
    segments: [Segment; SEGMENTS],
    len: AtomicUsize,
    append: Mutex<()>,
}

impl std::fmt::Debug for NameList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameList")
            .field("len", &self.len())
            .finish()
    }
}

/// The segment and the offset in it of slot `i`.
fn locate(i: usize) -> (usize, usize) {
    let block = i / BASE + 1;
    let segment = (usize::BITS - 1 - block.leading_zeros()) as usize;
    (segment, i - BASE * ((1 << segment) - 1))
}

impl NameList {
    /// The shared string of `sym` (for values that outlive a borrow of the list).
    pub fn shared(&self, sym: Sym) -> Option<&Arc<str>> {
        let (segment, at) = locate(sym as usize);
        self.segments.get(segment)?.get()?.get(at)?.get()
    }

    /// The name of `sym` (empty for a symbol this list never held, which cannot happen for
    /// bindings built against it).
    pub fn name(&self, sym: Sym) -> &str {
        self.shared(sym).map_or("", |s| s)
    }

    /// Number of names appended so far.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `name` as slot `at` if the list holds exactly `at` names; false otherwise (the
    /// caller's table diverged from this list) or when the list is full.
    fn append_at(&self, at: usize, name: Arc<str>) -> bool {
        let _one_writer = self.append.lock().unwrap_or_else(|e| e.into_inner());
        if self.len.load(Ordering::Acquire) != at {
            return false;
        }
        let (segment, i) = locate(at);
        let Some(slots) = self.segments.get(segment) else {
            return false;
        };
        let slots = slots.get_or_init(|| (0..BASE << segment).map(|_| OnceLock::new()).collect());
        if slots.get(i).is_none_or(|slot| slot.set(name).is_err()) {
            return false;
        }
        self.len.store(at + 1, Ordering::Release);
        true
    }

    /// A new list holding the first `n` names of this one.
    fn prefix(&self, n: usize) -> Self {
        let copy = Self::default();
        for i in 0..n.min(self.len()) {
            let name = Sym::try_from(i).ok().and_then(|s| self.shared(s)).cloned();
            copy.append_at(i, name.unwrap_or_else(|| Arc::from("")));
        }
        copy
    }
}

/// Interned names. Append-only: a symbol, once handed out, names the same string for the life of
/// the table and of every version made from it, so bindings built against an older version
/// resolve against a newer one. The index is sharded: a write that interns a new name makes a
/// new version of the table and copies one shard of it (about 500 entries at a million
/// bindings), where copying the whole index took milliseconds; the list is shared. Names of
/// deleted bindings stay until the directory rebuilds the table (`State::compacted` there).
#[derive(Debug, Clone, Default)]
pub struct Names {
    list: Arc<NameList>,
    /// Names this table holds: a prefix of `list`, all of it unless another table extended it.
    len: usize,
    index: ShardedMap<Interned>,
}

/// An index entry: a name and its symbol.
#[derive(Debug, Clone)]
struct Interned(Arc<str>, Sym);

impl Keyed for Interned {
    fn key(&self) -> &str {
        &self.0
    }
}

impl Names {
    /// The symbol of `name`, adding it if new.
    pub fn intern(&mut self, name: &str) -> Sym {
        if let Some(s) = self.get(name) {
            return s;
        }
        // Past four billion names the table would wrap; a directory never gets near that, and
        // the last symbol is reused rather than panicking.
        let s = Sym::try_from(self.len).unwrap_or(Sym::MAX);
        let name: Arc<str> = Arc::from(name);
        if !self.list.append_at(self.len, name.clone()) {
            // Another table extended the shared list past this one: continue on a copy.
            self.list = Arc::new(self.list.prefix(self.len));
            self.list.append_at(self.len, name.clone());
        }
        self.len += 1;
        self.index.insert(Interned(name, s));
        s
    }

    /// The symbol of `name`, if interned.
    pub fn get(&self, name: &str) -> Option<Sym> {
        self.index.get(name).map(|i| i.1)
    }

    /// The name of `sym`.
    pub fn name(&self, sym: Sym) -> &str {
        self.list.name(sym)
    }

    /// The names by symbol, as binding sets keep them.
    pub fn list(&self) -> &Arc<NameList> {
        &self.list
    }

    /// Whether every name of `b` is already interned (a write that adds none can share the table).
    pub fn covers(&self, b: &Binding) -> bool {
        names_of(b).all(|n| self.get(n).is_some())
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn names_of(b: &Binding) -> impl Iterator<Item = &str> {
    b.subjects
        .iter()
        .chain(&b.groups)
        .chain(&b.roles)
        .chain(&b.permissions)
        .map(String::as_str)
        .chain(b.resource.iter().flat_map(|r| {
            [r.resource_type.as_str(), r.resource_id.as_str()]
                .into_iter()
                .chain(r.company_id.as_deref())
        }))
}

/// A binding in interned form, in one allocation: five little-endian `u32`s (the lengths of
/// subjects, groups, roles and permissions, and of the id in bytes), the symbols of those four
/// lists, the resource type, id and (when it names one) company symbols if it has a resource,
/// then the id's bytes. A typical
/// binding (one subject, one role, a resource) takes 48 bytes plus its `Box`, where the same
/// binding as `String`s and `Vec`s took seven allocations.
#[derive(Debug, PartialEq, Eq)]
pub struct StoredBinding {
    bytes: Box<[u8]>,
}

/// Lengths stored ahead of the symbols.
const HEAD: usize = 5;

/// A list of symbols inside a [`StoredBinding`].
#[derive(Debug, Clone, Copy)]
pub struct Syms<'a>(&'a [u8]);

impl<'a> Syms<'a> {
    /// The symbols in order.
    pub fn iter(self) -> impl Iterator<Item = Sym> + 'a {
        self.0
            .chunks_exact(4)
            .map(|c| c.try_into().map_or(Sym::MAX, Sym::from_le_bytes))
    }

    /// How many.
    pub fn len(self) -> usize {
        self.0.len() / 4
    }

    /// Whether there are none.
    pub fn is_empty(self) -> bool {
        self.0.is_empty()
    }

    /// Whether `sym` is one of them.
    pub fn contains(self, sym: Sym) -> bool {
        self.iter().any(|s| s == sym)
    }

    /// The symbols in order, each once (a name may be listed twice).
    pub fn distinct(self) -> impl Iterator<Item = Sym> + 'a {
        self.iter()
            .enumerate()
            .filter(move |&(i, s)| !self.iter().take(i).any(|x| x == s))
            .map(|(_, s)| s)
    }
}

fn len32(n: usize) -> [u8; 4] {
    Sym::try_from(n).unwrap_or(Sym::MAX).to_le_bytes()
}

impl StoredBinding {
    /// Interns `b` into `names`.
    pub fn new(b: &Binding, names: &mut Names) -> Self {
        Self::build(b, |n| names.intern(n))
    }

    /// `b` against a table that already holds all its names ([`Names::covers`]), without
    /// writing to it (so a shared table need not be copied).
    pub fn resolve(b: &Binding, names: &Names) -> Self {
        // A missing name cannot happen after `covers`; it would resolve to the empty string.
        Self::build(b, |n| names.get(n).unwrap_or(Sym::MAX))
    }

    fn build(b: &Binding, mut sym: impl FnMut(&str) -> Sym) -> Self {
        let lists = [&b.subjects, &b.groups, &b.roles, &b.permissions];
        let resource_syms = b
            .resource
            .as_ref()
            .map_or(0, |r| 2 + usize::from(r.company_id.is_some()));
        let syms = lists.iter().map(|l| l.len()).sum::<usize>() + resource_syms;
        let mut bytes = Vec::with_capacity(4 * (HEAD + syms) + b.binding_id.len());
        for l in lists {
            bytes.extend(len32(l.len()));
        }
        bytes.extend(len32(b.binding_id.len()));
        for l in lists {
            for n in l.iter() {
                bytes.extend(sym(n).to_le_bytes());
            }
        }
        if let Some(r) = &b.resource {
            bytes.extend(sym(&r.resource_type).to_le_bytes());
            bytes.extend(sym(&r.resource_id).to_le_bytes());
            if let Some(c) = &r.company_id {
                bytes.extend(sym(c).to_le_bytes());
            }
        }
        bytes.extend(b.binding_id.as_bytes());
        Self {
            bytes: bytes.into_boxed_slice(),
        }
    }

    fn head(&self, i: usize) -> usize {
        self.bytes
            .get(4 * i..4 * i + 4)
            .and_then(|c| c.try_into().ok())
            .map_or(0, |c| Sym::from_le_bytes(c) as usize)
    }

    /// Where the id starts.
    fn id_start(&self) -> usize {
        self.bytes.len().saturating_sub(self.head(4))
    }

    /// The binding id's bytes (ordering and lookups compare these).
    pub fn id_bytes(&self) -> &[u8] {
        self.bytes.get(self.id_start()..).unwrap_or(&[])
    }

    /// The binding id.
    pub fn id(&self) -> &str {
        // Built from a `String`, so always UTF-8.
        std::str::from_utf8(self.id_bytes()).unwrap_or("")
    }

    fn list(&self, which: usize) -> Syms<'_> {
        let start = 4 * (HEAD + (0..which).map(|i| self.head(i)).sum::<usize>());
        let end = start + 4 * self.head(which);
        Syms(self.bytes.get(start..end).unwrap_or(&[]))
    }

    /// Subjects named.
    pub fn subjects(&self) -> Syms<'_> {
        self.list(0)
    }

    /// Groups named.
    pub fn groups(&self) -> Syms<'_> {
        self.list(1)
    }

    /// Roles held.
    pub fn roles(&self) -> Syms<'_> {
        self.list(2)
    }

    /// Direct permissions held.
    pub fn permissions(&self) -> Syms<'_> {
        self.list(3)
    }

    /// Resource type, id and company, for bindings with a resource.
    pub fn resource(&self) -> Option<(Sym, Sym, Option<Sym>)> {
        let used = 4 * (HEAD + (0..4).map(|i| self.head(i)).sum::<usize>());
        let mut rest = Syms(self.bytes.get(used..self.id_start()).unwrap_or(&[])).iter();
        match (rest.next(), rest.next(), rest.next(), rest.next()) {
            (Some(t), Some(id), company, None) => Some((t, id, company)),
            _ => None,
        }
    }

    /// The API model of this binding.
    pub fn expand(&self, names: &NameList) -> Binding {
        let strings = |l: Syms<'_>| l.iter().map(|s| names.name(s).to_owned()).collect();
        Binding {
            binding_id: self.id().to_owned(),
            subjects: strings(self.subjects()),
            groups: strings(self.groups()),
            roles: strings(self.roles()),
            permissions: strings(self.permissions()),
            resource: self.resource().map(|(t, id, company)| BindingResource {
                resource_type: names.name(t).to_owned(),
                resource_id: names.name(id).to_owned(),
                company_id: company.map(|c| names.name(c).to_owned()),
            }),
        }
    }
}

/// Bindings as a store reads them: interned row by row, so a million of them are never held as
/// `Binding`s at once.
#[derive(Debug, Default)]
pub struct BindingTable {
    /// The names the bindings use.
    pub names: Names,
    /// The bindings.
    pub list: Vec<StoredBinding>,
}

impl BindingTable {
    /// An empty table with room for `n` bindings.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            names: Names::default(),
            list: Vec::with_capacity(n),
        }
    }

    /// Adds one binding.
    pub fn push(&mut self, b: &Binding) {
        let stored = StoredBinding::new(b, &mut self.names);
        self.list.push(stored);
    }
}

impl<'a> FromIterator<&'a Binding> for BindingTable {
    fn from_iter<I: IntoIterator<Item = &'a Binding>>(iter: I) -> Self {
        let mut t = Self::default();
        for b in iter {
            t.push(b);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(resource: bool) -> Binding {
        Binding {
            binding_id: "b1".into(),
            subjects: vec!["sa1".into(), "sa2".into()],
            groups: vec!["ops".into()],
            roles: vec!["developer".into(), "sa1".into()],
            permissions: vec![],
            resource: resource.then(|| BindingResource::scoped("project", "p1", "sa2")),
        }
    }

    #[test]
    fn a_binding_round_trips_and_shares_names() {
        let mut names = Names::default();
        for resource in [true, false] {
            let b = binding(resource);
            let s = StoredBinding::new(&b, &mut names);
            assert_eq!(s.expand(names.list()), b);
            assert_eq!(s.subjects().len(), 2);
            assert_eq!(s.resource().is_some(), resource);
        }
        // `sa1` as a subject and as a role name is one symbol, and `sa2` as a subject and a
        // company; six distinct names in all.
        assert_eq!(names.len(), 6);
        // A resource without a company (the console level) round-trips too.
        let console = Binding {
            resource: Some(BindingResource::console()),
            ..binding(false)
        };
        let s = StoredBinding::new(&console, &mut names);
        assert_eq!(s.expand(names.list()), console);
        assert_eq!(s.resource().map(|(_, _, c)| c), Some(None));
        names = Names::default();
        for resource in [true, false] {
            StoredBinding::new(&binding(resource), &mut names);
        }
        let b = binding(true);
        assert_eq!(
            StoredBinding::resolve(&b, &names),
            StoredBinding::new(&b, &mut names)
        );
        assert_eq!(names.len(), 6);
        assert_eq!(names.get("sa1"), Some(0));
        assert!(names.covers(&binding(true)));
        let mut other = binding(true);
        other.permissions.push("console.root.view".into());
        assert!(!names.covers(&other));
    }

    #[test]
    fn versions_of_the_table_share_one_list_and_a_fork_copies_it() {
        let mut names = Names::default();
        for i in 0..BASE + 10 {
            names.intern(&format!("n{i}"));
        }
        let old = names.clone();
        let base = (BASE + 10) as Sym;
        assert_eq!(names.intern("one more"), base);
        // The newer version appended in place: one list for both.
        assert!(Arc::ptr_eq(old.list(), names.list()));
        assert_eq!(old.len() + 1, names.len());
        for sym in [0, 5, BASE as Sym, base - 1] {
            assert_eq!(old.name(sym), names.name(sym));
        }
        assert_eq!(names.name(base), "one more");
        assert_eq!(old.get("one more"), None);
        // The old version extended on its own must not overwrite the newer one's name.
        let mut fork = old.clone();
        assert_eq!(fork.intern("other"), base);
        assert!(!Arc::ptr_eq(fork.list(), names.list()));
        assert_eq!((fork.name(base), names.name(base)), ("other", "one more"));
        assert_eq!(fork.name(5), "n5");
        assert_eq!(fork.get("one more"), None);
    }

    #[test]
    fn slots_are_located_across_doubling_segments() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(BASE - 1), (0, BASE - 1));
        assert_eq!(locate(BASE), (1, 0));
        assert_eq!(locate(3 * BASE - 1), (1, 2 * BASE - 1));
        assert_eq!(locate(3 * BASE), (2, 0));
        let last = Sym::MAX as usize;
        assert!(locate(last).0 < SEGMENTS);
    }

    #[test]
    fn a_new_name_is_seen_by_the_new_version_only() {
        let mut names = Names::default();
        for i in 0..50_000 {
            assert_eq!(names.intern(&format!("n{i}")), i);
        }
        let old = names.clone();
        assert_eq!(names.intern("n49999"), 49_999);
        assert_eq!(names.intern("new"), 50_000);
        assert_eq!((old.get("new"), names.get("new")), (None, Some(50_000)));
        assert!((0..50_000).all(|i| names.get(&format!("n{i}")) == Some(i)));
        assert!((0..50_000).all(|i| names.name(i) == format!("n{i}")));
        assert_eq!(names.get("n50000"), None);
    }

    #[test]
    fn an_empty_binding_has_empty_lists_and_no_resource() {
        let mut names = Names::default();
        let b = Binding {
            binding_id: "e".into(),
            subjects: vec![],
            groups: vec![],
            roles: vec![],
            permissions: vec![],
            resource: None,
        };
        let s = StoredBinding::new(&b, &mut names);
        assert_eq!(s.expand(names.list()), b);
        assert!(s.roles().is_empty() && s.resource().is_none() && names.is_empty());
    }
}
