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
use std::sync::Arc;

/// A name's symbol in a [`Names`] table.
pub type Sym = u32;

/// Names per shared block: a new version of the table copies at most one partial block.
const BLOCK: usize = 1024;

/// The names of a [`Names`] table by symbol, in blocks shared between versions of the table.
/// A binding set keeps the list of the version it was built in alive; that costs a few pointers
/// and at most one partial block per version, never a copy of every name (at a million bindings
/// a full copy is about 10 MB, and every write adding a name makes a version).
#[derive(Debug, Clone, Default)]
pub struct NameList {
    full: Vec<Arc<[Arc<str>]>>,
    tail: Vec<Arc<str>>,
}

impl NameList {
    /// The shared string of `sym` (for values that outlive a borrow of the list).
    pub fn shared(&self, sym: Sym) -> Option<&Arc<str>> {
        let (block, i) = (sym as usize / BLOCK, sym as usize % BLOCK);
        match self.full.get(block) {
            Some(b) => b.get(i),
            None if block == self.full.len() => self.tail.get(i),
            None => None,
        }
    }

    /// The name of `sym` (empty for a symbol this list never held, which cannot happen for
    /// bindings built against it or an older version).
    pub fn name(&self, sym: Sym) -> &str {
        self.shared(sym).map_or("", |s| s)
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.full.len() * BLOCK + self.tail.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, name: Arc<str>) {
        self.tail.push(name);
        if self.tail.len() == BLOCK {
            let block = std::mem::take(&mut self.tail);
            self.full.push(block.into());
        }
    }
}

/// Interned names. Append-only: a symbol, once handed out, names the same string for the life of
/// the table and of every version made from it, so bindings built against an older version
/// resolve against a newer one. The index is sharded: a write that interns a new name makes a
/// new version of the table and copies one shard of it (about 500 entries at a million
/// bindings), where copying the whole index took milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Names {
    list: Arc<NameList>,
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
        let s = Sym::try_from(self.list.len()).unwrap_or(Sym::MAX);
        let name: Arc<str> = Arc::from(name);
        Arc::make_mut(&mut self.list).push(name.clone());
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
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
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
    fn a_new_version_of_the_table_shares_its_full_blocks() {
        let mut names = Names::default();
        for i in 0..BLOCK + 10 {
            names.intern(&format!("n{i}"));
        }
        let old = names.clone();
        names.intern("one more");
        assert!(!Arc::ptr_eq(old.list(), names.list()));
        assert_eq!(old.list().full.len(), 1);
        assert!(Arc::ptr_eq(&old.list().full[0], &names.list().full[0]));
        assert_eq!(old.len() + 1, names.len());
        for sym in [0, 5, BLOCK as Sym, (BLOCK + 9) as Sym] {
            assert_eq!(old.name(sym), names.name(sym));
        }
        assert_eq!(names.name((BLOCK + 10) as Sym), "one more");
        assert_eq!(old.name((BLOCK + 10) as Sym), "");
        assert_eq!(names.get("n1030"), Some(1030));
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
