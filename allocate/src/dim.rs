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
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::ops::Deref;
use std::sync::{Mutex, OnceLock};

/// A dimension value of the grain (account, service, resource, tag, rule name, ...): a code for
/// a text held once per process. Equal codes are equal texts and the reverse, so comparing two
/// values compares two integers; hashing and ordering go by the text, as a `str` would.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Dim(NonZeroU32);

/// Segment `s` holds the texts of codes `2^s ..= 2^(s+1) - 1`: segments are allocated once,
/// never moved, so readers index them without a lock.
static SEGMENTS: [OnceLock<Box<[OnceLock<&'static str>]>>; 32] = [const { OnceLock::new() }; 32];

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
        let stored = table.store(text);
        let segment = 31 - code.leading_zeros() as usize;
        let slots = SEGMENTS[segment].get_or_init(|| (0..1usize << segment).map(|_| OnceLock::new()).collect());
        slots[(code.get() - (1 << segment)) as usize].set(stored).expect("a code is handed out once");
        let dim = Dim(code);
        table.codes.insert(dim);
        dim
    }

    pub fn as_str(self) -> &'static str {
        let code = self.0.get();
        let segment = 31 - code.leading_zeros() as usize;
        SEGMENTS[segment].get().and_then(|slots| slots[(code - (1 << segment)) as usize].get()).expect("a code's text is stored before the code is handed out")
    }

    /// The code itself: equal exactly when the texts are, for hashing a row's key cheaply.
    pub fn code(self) -> u32 {
        self.0.get()
    }

    /// The value a code stands for, if it was handed out: a reader that keys its own tables by
    /// code turns them back into values.
    pub fn from_code(code: u32) -> Option<Dim> {
        let segment = 31usize.checked_sub(code.leading_zeros() as usize)?;
        SEGMENTS[segment].get()?[(code - (1 << segment)) as usize].get()?;
        NonZeroU32::new(code).map(Dim)
    }
}

impl Default for Dim {
    fn default() -> Dim {
        Dim::new("")
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
        let long = "x".repeat(BLOCK + 7);
        assert_eq!(Dim::new(&long).as_str(), long);
    }
}
