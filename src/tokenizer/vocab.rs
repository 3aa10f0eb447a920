//! Token texts in one arena, with an open-addressing hash index from text to id.
//!
//! One allocation for all texts and one for the index, instead of two small allocations per
//! token (a 152k vocabulary loads about twice as fast this way; docs/perf.md).

use std::hash::Hasher;

use super::FxHasher;

#[derive(Debug, Default)]
pub(crate) struct Vocab {
    /// All token texts, concatenated.
    arena: String,
    /// `arena[off[id]..off[id + 1]]` is token `id`'s text; `[n_vocab + 1]`.
    off: Vec<u32>,
    /// Linear-probing table of `(id + 1, high half of the text's hash)` (id 0 = empty); its
    /// length is a power of two. The hash half spares most probes a look at the arena.
    table: Vec<(u32, u32)>,
}

#[inline]
fn hash(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    h.finish()
}

impl Vocab {
    /// An empty vocabulary with room for `n` tokens of `bytes` total.
    pub(crate) fn with_capacity(n: usize, bytes: usize) -> Vocab {
        let size = (2 * n).next_power_of_two().max(16);
        let mut off = Vec::with_capacity(n + 1);
        off.push(0);
        Vocab {
            arena: String::with_capacity(bytes),
            off,
            table: vec![(0, 0); size],
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.off.len() - 1
    }

    /// Append a token. On a duplicate text, returns the earlier id and adds nothing.
    pub(crate) fn push(&mut self, text: &str) -> Result<u32, u32> {
        if let Some(first) = self.find(text) {
            return Err(first);
        }
        let id = self.len() as u32;
        if self.len() * 2 >= self.table.len() {
            self.grow();
        }
        self.arena.push_str(text);
        self.off.push(self.arena.len() as u32);
        self.insert(id);
        Ok(id)
    }

    fn insert(&mut self, id: u32) {
        let mask = self.table.len() - 1;
        let h = hash(self.text(id));
        let mut i = h as usize & mask;
        while self.table[i].0 != 0 {
            i = (i + 1) & mask;
        }
        self.table[i] = (id + 1, (h >> 32) as u32);
    }

    fn grow(&mut self) {
        let size = self.table.len() * 2;
        self.table = vec![(0, 0); size];
        for id in 0..self.len() as u32 {
            self.insert(id);
        }
    }

    /// Text of token `id`; `id` must be in range.
    #[inline]
    pub(crate) fn text(&self, id: u32) -> &str {
        &self.arena[self.off[id as usize] as usize..self.off[id as usize + 1] as usize]
    }

    /// Text of token `id`, or `None` out of range.
    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<&str> {
        ((id as usize) < self.len()).then(|| self.text(id))
    }

    /// Id of the token whose text is `s`.
    #[inline]
    pub(crate) fn find(&self, s: &str) -> Option<u32> {
        let mask = self.table.len() - 1;
        let h = hash(s);
        let tag = (h >> 32) as u32;
        let mut i = h as usize & mask;
        loop {
            let (e, t) = self.table[i];
            if e == 0 {
                return None;
            }
            if t == tag && self.text(e - 1) == s {
                return Some(e - 1);
            }
            i = (i + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_find_duplicates() {
        let mut v = Vocab::with_capacity(2, 4);
        for i in 0..1000 {
            assert_eq!(v.push(&format!("t{i}")), Ok(i));
        }
        assert_eq!(v.push("t7"), Err(7));
        assert_eq!(v.len(), 1000);
        for i in 0..1000 {
            assert_eq!(v.find(&format!("t{i}")), Some(i));
            assert_eq!(v.text(i), format!("t{i}"));
        }
        assert_eq!(v.find("t1000"), None);
        assert_eq!(v.get(1000), None);
    }
}
