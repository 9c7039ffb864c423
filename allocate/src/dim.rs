//! Dimension values as four-byte codes (docs/design.md §8, "compact rows").
//!
//! A month at its worst has as many grain rows as line items, each with eleven text values, its
//! tags and, once allocated, a rule, a method and a value per dimension. As reference-counted
//! strings those were 16 bytes each plus a count to touch on every copy; as codes they are 4
//! bytes and copied for free. Each distinct text is stored once for the life of the process in
//! an append-only table, so a code reads back as `&'static str` without a lock.
//!
//! The table only grows. A run holds each distinct value of its month once, as the interned
//! strings did; a warm Lambda running the same month again finds its values already there, so a
//! process's table is bounded by the distinct values of the months it has read.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::ops::Deref;
use std::sync::{Mutex, OnceLock};

/// A dimension value of the grain (account, service, resource, tag, rule name, ...): a code for
/// a text held once per process. Equal codes are equal texts and the reverse, so comparing two
/// values compares two integers; hashing and ordering go by the text, as a `str` would.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Dim(NonZeroU32);

/// What each code stands for. Segment `s` holds codes `2^s ..= 2^(s+1) - 1`: segments are
/// allocated once and never moved, so readers index them without a lock.
struct Slots<T: ?Sized + 'static>([OnceLock<Box<[OnceLock<&'static T>]>>; 32]);

impl<T: ?Sized + 'static> Slots<T> {
    const fn new() -> Slots<T> {
        Slots([const { OnceLock::new() }; 32])
    }

    fn at(code: u32) -> Option<(usize, usize)> {
        let segment = 31usize.checked_sub(code.leading_zeros() as usize)?;
        Some((segment, (code - (1 << segment)) as usize))
    }

    /// Publishes what `code` stands for (once, before the code is handed out).
    fn set(&self, code: NonZeroU32, value: &'static T) {
        let (segment, index) = Slots::<T>::at(code.get()).expect("a non-zero code");
        let slots = self.0[segment].get_or_init(|| (0..1usize << segment).map(|_| OnceLock::new()).collect());
        assert!(slots[index].set(value).is_ok(), "a code is handed out once");
    }

    fn get(&self, code: u32) -> Option<&'static T> {
        let (segment, index) = Slots::<T>::at(code)?;
        self.0[segment].get()?[index].get().copied()
    }
}

static TEXTS: Slots<str> = Slots::new();

struct Table {
    /// Every value handed out, found by its text (a value hashes as its text).
    codes: HashSet<Dim, foldhash::fast::FixedState>,
    /// Unused bytes of the current block, where the next texts are copied.
    free: &'static mut [u8],
}

fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(Table { codes: HashSet::default(), free: &mut [] }))
}

/// Texts are copied into blocks of this size (longer ones get their own), so a month's millions
/// of resource IDs cost their bytes, not an allocation each.
const BLOCK: usize = 1 << 20;

impl Table {
    fn store(&mut self, text: &str) -> &'static str {
        if self.free.len() < text.len() {
            self.free = Box::leak(vec![0u8; BLOCK.max(text.len())].into_boxed_slice());
        }
        let (head, tail) = std::mem::take(&mut self.free).split_at_mut(text.len());
        head.copy_from_slice(text.as_bytes());
        self.free = tail;
        std::str::from_utf8(head).expect("a copy of a str is UTF-8")
    }
}

impl Dim {
    /// The code of `text`, storing it the first time it is seen.
    pub fn new(text: &str) -> Dim {
        let mut table = table().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(&code) = table.codes.get(text) {
            return code;
        }
        let code = u32::try_from(table.codes.len() + 1).ok().and_then(NonZeroU32::new).expect("fewer than 4 billion distinct dimension values");
        TEXTS.set(code, table.store(text));
        let dim = Dim(code);
        table.codes.insert(dim);
        dim
    }

    pub fn as_str(self) -> &'static str {
        TEXTS.get(self.0.get()).expect("a code's text is stored before the code is handed out")
    }

    /// The code itself: equal exactly when the texts are, for hashing a row's key cheaply.
    pub fn code(self) -> u32 {
        self.0.get()
    }

    /// The value a code stands for, if it was handed out: a reader that keys its own tables by
    /// code turns them back into values.
    pub fn from_code(code: u32) -> Option<Dim> {
        TEXTS.get(code)?;
        NonZeroU32::new(code).map(Dim)
    }
}

/// The empty text, looked up once: defaults are made per row.
impl Default for Dim {
    fn default() -> Dim {
        static EMPTY: OnceLock<Dim> = OnceLock::new();
        *EMPTY.get_or_init(|| Dim::new(""))
    }
}

impl Deref for Dim {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Dim {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// Maps keyed by values can be read with a `&str`: the hash is the text's.
impl Borrow<str> for Dim {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Hash for Dim {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl Ord for Dim {
    fn cmp(&self, other: &Dim) -> std::cmp::Ordering {
        if self == other {
            std::cmp::Ordering::Equal
        } else {
            self.as_str().cmp(other.as_str())
        }
    }
}

impl PartialOrd for Dim {
    fn partial_cmp(&self, other: &Dim) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Debug for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl From<&str> for Dim {
    fn from(text: &str) -> Dim {
        Dim::new(text)
    }
}

impl From<String> for Dim {
    fn from(text: String) -> Dim {
        Dim::new(&text)
    }
}

impl From<&String> for Dim {
    fn from(text: &String) -> Dim {
        Dim::new(text)
    }
}

impl PartialEq<str> for Dim {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Dim {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A short list of values held once per process and named by a code, as [`Dim`] holds one
/// value: a line's tag values ([`TagValues`]), a piece's dimension values ([`DimValues`]). Grain
/// rows repeat a few such lists millions of times; as a code each costs 4 bytes and no
/// allocation of its own. Reads as a slice.
pub struct Tuple<T: TupleItem>(NonZeroU32, PhantomData<T>);

/// A line's values of the rule set's tag keys, in their order (`None`: absent).
pub type TagValues = Tuple<Option<Dim>>;
/// A piece's value per dimension of the rules, in their order.
pub type DimValues = Tuple<Dim>;

/// The item types a [`Tuple`] holds, each with its own table.
pub trait TupleItem: Copy + Eq + Hash + Send + Sync + 'static {
    #[doc(hidden)]
    fn table() -> &'static TupleTable<Self>;
}

#[doc(hidden)]
pub struct TupleTable<T: 'static> {
    slots: Slots<[T]>,
    codes: OnceLock<Mutex<HashMap<&'static [T], NonZeroU32, foldhash::fast::FixedState>>>,
    /// The empty list's code, looked up once: every piece starts with it.
    empty: OnceLock<NonZeroU32>,
}

impl<T: TupleItem> TupleTable<T> {
    const fn new() -> TupleTable<T> {
        TupleTable { slots: Slots::new(), codes: OnceLock::new(), empty: OnceLock::new() }
    }
}

impl TupleItem for Option<Dim> {
    fn table() -> &'static TupleTable<Self> {
        static TABLE: TupleTable<Option<Dim>> = TupleTable::new();
        &TABLE
    }
}

impl TupleItem for Dim {
    fn table() -> &'static TupleTable<Self> {
        static TABLE: TupleTable<Dim> = TupleTable::new();
        &TABLE
    }
}

impl<T: TupleItem> Tuple<T> {
    pub fn new(values: &[T]) -> Tuple<T> {
        let table = T::table();
        let mut codes = table.codes.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(&code) = codes.get(values) {
            return Tuple(code, PhantomData);
        }
        let code = u32::try_from(codes.len() + 1).ok().and_then(NonZeroU32::new).expect("fewer than 4 billion distinct value lists");
        let kept: &'static [T] = Box::leak(values.to_vec().into_boxed_slice());
        table.slots.set(code, kept);
        codes.insert(kept, code);
        Tuple(code, PhantomData)
    }

    /// The list's code: equal exactly when the lists are.
    pub fn code(self) -> u32 {
        self.0.get()
    }

    pub fn as_slice(&self) -> &'static [T] {
        T::table().slots.get(self.0.get()).expect("a list is stored before its code is handed out")
    }
}

impl<T: TupleItem> Clone for Tuple<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: TupleItem> Copy for Tuple<T> {}

impl<T: TupleItem> PartialEq for Tuple<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<T: TupleItem> Eq for Tuple<T> {}

impl<T: TupleItem> Hash for Tuple<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl<T: TupleItem + Ord> Ord for Tuple<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self == other {
            std::cmp::Ordering::Equal
        } else {
            self.as_slice().cmp(other.as_slice())
        }
    }
}
impl<T: TupleItem + Ord> PartialOrd for Tuple<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: TupleItem> Default for Tuple<T> {
    fn default() -> Self {
        Tuple(*T::table().empty.get_or_init(|| Tuple::<T>::new(&[]).0), PhantomData)
    }
}

impl<T: TupleItem> Deref for Tuple<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: TupleItem + std::fmt::Debug> std::fmt::Debug for Tuple<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// Sets of lists can be read with a slice: the hash is the slice's.
impl<T: TupleItem> Borrow<[T]> for Tuple<T> {
    fn borrow(&self) -> &[T] {
        self.as_slice()
    }
}

impl<'a, T: TupleItem> IntoIterator for &'a Tuple<T> {
    type Item = &'static T;
    type IntoIter = std::slice::Iter<'static, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl<T: TupleItem> From<Vec<T>> for Tuple<T> {
    fn from(values: Vec<T>) -> Self {
        Tuple::new(&values)
    }
}

impl<T: TupleItem> From<&[T]> for Tuple<T> {
    fn from(values: &[T]) -> Self {
        Tuple::new(values)
    }
}

impl<T: TupleItem> FromIterator<T> for Tuple<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Tuple::new(&iter.into_iter().collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_share_a_code_and_read_back() {
        let a = Dim::new("i-0abc");
        let b = Dim::from(String::from("i-0abc"));
        let c = Dim::new("i-0abd");
        assert_eq!(a, b);
        assert_eq!(a.code(), b.code());
        assert_ne!(a, c);
        assert_eq!(&*a, "i-0abc");
        assert!(a < c);
        assert_eq!(Dim::default().as_str(), "");
        assert_eq!(Dim::from_code(a.code()), Some(a));
        assert_eq!(Dim::from_code(0), None);
        assert_eq!(Dim::from_code(u32::MAX), None);
        let mut map = std::collections::HashMap::new();
        map.insert(a, 1);
        assert_eq!(map.get("i-0abc"), Some(&1));
    }

    #[test]
    fn codes_cross_segment_boundaries_and_threads() {
        let texts: Vec<String> = (0..5000).map(|i| format!("value-{i}")).collect();
        let codes: Vec<Vec<Dim>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4).map(|_| s.spawn(|| texts.iter().map(|t| Dim::new(t)).collect::<Vec<_>>())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for per_thread in &codes {
            assert_eq!(per_thread, &codes[0]);
        }
        for (text, dim) in texts.iter().zip(&codes[0]) {
            assert_eq!(dim.as_str(), text);
        }
        let lists: Vec<TagValues> = (0..3000).map(|i| TagValues::new(&[Some(Dim::new(&format!("value-{}", i % 1500))), None])).collect();
        assert_eq!(lists[7], lists[1507]);
        assert_ne!(lists[7], lists[8]);
        assert_eq!(lists[1507][0].map(|d| d.as_str()), Some("value-7"));
        assert!(DimValues::default().is_empty());
        let long = "x".repeat(BLOCK + 7);
        assert_eq!(Dim::new(&long).as_str(), long);
    }
}
