//! A caller's candidate bindings as the directory hands them to the request path: shared,
//! immutable, interned with the directory's names. A layer above may memoise what it derives
//! from a set (the policy input does), so that a set handed out on every request until the next
//! change is converted once.

use super::Binding;
use super::interned::{NameList, Names, StoredBinding};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::sync::{Arc, OnceLock};

/// Number of memo slots a set carries.
pub const MEMO_SLOTS: usize = 2;

/// A memoised value of any type.
pub type Memo = Box<dyn Any + Send + Sync>;

/// A caller's candidate bindings, shared and immutable. What a layer above derives from it is
/// memoised in it, so a directory that hands out one `BindingSet` per subject pays a conversion
/// once per change, not once per request. The bindings themselves, and the names they use, are
/// shared with the directory.
#[derive(Debug, Clone)]
pub struct BindingSet(Arc<BindingSetInner>);

impl Default for BindingSet {
    /// The empty set, one shared by the whole process: every policy input starts with an empty
    /// set, and building and freeing one (its name table included) per request cost more than
    /// the cached decision's lookup. What is memoised in it is derived from no bindings, the
    /// same for every caller.
    fn default() -> Self {
        static EMPTY: std::sync::LazyLock<BindingSet> =
            std::sync::LazyLock::new(|| BindingSet(Arc::default()));
        EMPTY.clone()
    }
}

#[derive(Default)]
struct BindingSetInner {
    list: Vec<Arc<StoredBinding>>,
    names: Arc<NameList>,
    /// Values a layer above derives from the set once (the policy input's conversions), kept
    /// with it so that they live exactly as long as the set.
    memo: [OnceLock<Memo>; MEMO_SLOTS],
}

impl std::fmt::Debug for BindingSetInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindingSet")
            .field("bindings", &self.list.len())
            .finish_non_exhaustive()
    }
}

impl BindingSet {
    /// Wraps bindings (interned into a table of their own).
    pub fn new(list: Vec<Binding>) -> Self {
        let mut names = Names::default();
        let list = list
            .iter()
            .map(|b| Arc::new(StoredBinding::new(b, &mut names)))
            .collect();
        Self::stored(list, names.list().clone())
    }

    /// Wraps bindings shared with their owner (the directory), interned in `names`.
    pub fn stored(list: Vec<Arc<StoredBinding>>, names: Arc<NameList>) -> Self {
        Self(Arc::new(BindingSetInner {
            list,
            names,
            memo: Default::default(),
        }))
    }

    /// The bindings, interned.
    pub fn as_slice(&self) -> &[Arc<StoredBinding>] {
        &self.0.list
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.0.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.list.is_empty()
    }

    /// The bindings' ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.list.iter().map(|b| b.id())
    }

    /// The names the bindings are interned in.
    pub fn names(&self) -> &NameList {
        &self.0.names
    }

    /// Memo slot `slot` (below [`MEMO_SLOTS`]; a larger number means the last): a value a layer
    /// above derives from the set, computed once per set.
    pub fn memo(&self, slot: usize) -> &OnceLock<Memo> {
        &self.0.memo[slot.min(MEMO_SLOTS - 1)]
    }
}

impl From<Vec<Binding>> for BindingSet {
    fn from(list: Vec<Binding>) -> Self {
        Self::new(list)
    }
}

impl Serialize for BindingSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.list.iter().map(|b| b.expand(&self.0.names)))
    }
}

impl<'de> Deserialize<'de> for BindingSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Binding>::deserialize(d).map(Self::new)
    }
}
