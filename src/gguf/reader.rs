//! The GGUF reader: header, metadata and tensor infos parsed from a memory map.

use std::collections::HashSet;
use std::path::Path;

use ferrolm_kernels::GgmlType;

use super::value::{ArrayRef, Value, ValueType};
use super::{
    GgufError, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_KEY_LEN,
    MAX_STRING_LEN,
};

/// A bounds-checked little-endian reader over a byte slice. Every read checks the bytes left and
/// reports the offset of the failure.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Cursor { buf, pos }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn left(&self) -> u64 {
        (self.buf.len() - self.pos.min(self.buf.len())) as u64
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], GgufError> {
        if n > self.left() {
            return Err(GgufError::Truncated {
                what,
                offset: self.pos as u64,
                need: n,
                have: self.left(),
            });
        }
        let n = n as usize; // fits: n <= bytes left
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A GGUF string: u64 length then UTF-8 bytes.
    fn string(&mut self, what: &'static str, limit: u64) -> Result<&'a str, GgufError> {
        let at = self.pos as u64;
        let len = self.u64(what)?;
        if len > limit {
            return Err(GgufError::TooLong {
                what,
                offset: at,
                len,
                limit,
            });
        }
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| GgufError::InvalidUtf8 { what, offset: at })
    }

    /// One value of type `ty`. `depth` counts array nesting (1 = top-level value).
    pub(crate) fn value(
        &mut self,
        ty: ValueType,
        key: &str,
        depth: u32,
    ) -> Result<Value<'a>, GgufError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>("u8 value")?[0]),
            ValueType::I8 => Value::I8(self.array::<1>("i8 value")?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array("u16 value")?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array("i16 value")?)),
            ValueType::U32 => Value::U32(self.u32("u32 value")?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array("i32 value")?)),
            ValueType::U64 => Value::U64(self.u64("u64 value")?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array("i64 value")?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array("f32 value")?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array("f64 value")?)),
            ValueType::Bool => {
                // gguf-py and ggml accept any non-zero byte as true; so do we.
                Value::Bool(self.array::<1>("bool value")?[0] != 0)
            }
            ValueType::String => Value::Str(self.string("string value", MAX_STRING_LEN)?),
            ValueType::Array => {
                if depth > MAX_ARRAY_DEPTH {
                    return Err(GgufError::TooDeep {
                        key: key.to_string(),
                        limit: MAX_ARRAY_DEPTH,
                    });
                }
                let type_id = self.u32("array element type")?;
                let elem =
                    ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
                        key: key.to_string(),
                        type_id,
                    })?;
                let at = self.pos as u64;
                let len = self.u64("array length")?;
                let start = self.pos;
                match elem.scalar_size() {
                    Some(size) => {
                        let n = len.checked_mul(size).ok_or(GgufError::TooLong {
                            what: "array",
                            offset: at,
                            len,
                            limit: self.left() / size,
                        })?;
                        self.take(n, "array elements")?;
                    }
                    None => {
                        // Strings and nested arrays are at least 8 bytes each: a count larger than
                        // that allows is rejected before walking.
                        if len > self.left() / 8 {
                            return Err(GgufError::Truncated {
                                what: "array elements",
                                offset: at,
                                need: len.saturating_mul(8),
                                have: self.left(),
                            });
                        }
                        for _ in 0..len {
                            self.value(elem, key, depth + 1)?;
                        }
                    }
                }
                Value::Array(ArrayRef {
                    elem,
                    len,
                    bytes: &self.buf[start..self.pos],
                })
            }
        })
    }
}

/// One metadata entry: spans into the file.
#[derive(Clone, Copy, Debug)]
struct MetaEntry {
    key_start: usize,
    key_len: usize,
    ty: ValueType,
    /// Start of the value's encoding (after its type id).
    val_start: usize,
}

/// A tensor's description, as parsed and validated. Offsets are absolute within the file.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    name_start: usize,
    name_len: usize,
    pub ty: GgmlType,
    /// Dimensions, ne0 (contiguous) first; unused dimensions are 1.
    pub dims: [u64; 4],
    pub n_dims: u32,
    /// Offset of the data relative to the start of the data section (as stored in the file).
    pub offset: u64,
    /// Absolute offset of the data in the file.
    pub file_offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn shape(&self) -> &[u64] {
        &self.dims[..self.n_dims as usize]
    }

    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A tensor borrowed from the file: name, type, shape, and its bytes (a view into the map).
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub ty: GgmlType,
    /// ne0 (contiguous) first; unused dimensions are 1.
    pub dims: [u64; 4],
    pub n_dims: u32,
    pub data: &'a [u8],
}

impl<'a> TensorView<'a> {
    pub fn shape(&self) -> &[u64] {
        &self.dims[..self.n_dims as usize]
    }

    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

enum Backing {
    Mmap(memmap2::Mmap),
    /// In-memory bytes (tests, fuzzing). u64 storage keeps the data 8-byte aligned like a map.
    Owned(Vec<u64>, usize),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Owned(v, len) => {
                // SAFETY: the Vec<u64> holds at least `len` initialized bytes (see `from_bytes`),
                // any byte pattern is a valid u8, and the slice borrows `self`.
                unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, *len) }
            }
        }
    }
}

/// An opened GGUF file: the map plus the parsed index.
pub struct Gguf {
    backing: Backing,
    version: u32,
    alignment: u64,
    meta: Vec<MetaEntry>,
    tensors: Vec<TensorInfo>,
    data_offset: u64,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("n_kv", &self.meta.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl Gguf {
    /// Memory-map and parse a GGUF file. Nothing of the tensor data is read.
    pub fn open(path: impl AsRef<Path>) -> Result<Gguf, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = super::open_regular(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.len() == 0 {
            return Err(GgufError::Truncated {
                what: "header",
                offset: 0,
                need: 4,
                have: 0,
            });
        }
        // SAFETY: the map is read-only. If another process truncates or rewrites the file while it is
        // mapped, reads may fault or see new bytes; this is the contract every mmap-based model
        // loader (llama.cpp included) accepts. We never write through the map.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        // Ask for 2 MiB pages. When the file is not yet cached, page faults then read it ahead in
        // 2 MiB folios (Linux, ext4/xfs), which the kernel maps with one page-table entry each
        // (needs transparent huge pages in "madvise" or "always" mode). Decode streams every
        // weight once per token, much faster from 2 MiB folios (docs/perf.md). Only a hint: an
        // error (no THP, other OS) changes nothing.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        Self::with_backing(Backing::Mmap(map))
    }

    /// Parse a GGUF image held in memory (tests and fuzzing).
    pub fn from_bytes(bytes: &[u8]) -> Result<Gguf, GgufError> {
        let mut v = vec![0u64; bytes.len().div_ceil(8)];
        // SAFETY: `v` owns at least `bytes.len()` bytes of writable, initialized storage; u8 has
        // alignment 1; the source and destination do not overlap (fresh allocation).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr() as *mut u8, bytes.len())
        };
        Self::with_backing(Backing::Owned(v, bytes.len()))
    }

    /// Parse and validate a GGUF image in place, without copying it (fuzzing, corruption tests).
    pub fn validate(bytes: &[u8]) -> Result<(), GgufError> {
        Self::parse(bytes).map(|_| ())
    }

    fn with_backing(backing: Backing) -> Result<Gguf, GgufError> {
        let (version, alignment, meta, tensors, data_offset) = Self::parse(backing.bytes())?;
        Ok(Gguf {
            backing,
            version,
            alignment,
            meta,
            tensors,
            data_offset,
        })
    }

    #[allow(clippy::type_complexity)]
    fn parse(buf: &[u8]) -> Result<(u32, u64, Vec<MetaEntry>, Vec<TensorInfo>, u64), GgufError> {
        let file_len = buf.len() as u64;
        let mut cur = Cursor::new(buf, 0);
        let magic = cur.take(4, "magic").map_err(|_| GgufError::BadMagic {
            found: buf[..buf.len().min(4)].to_vec(),
        })?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic {
                found: magic.to_vec(),
            });
        }
        let version = cur.u32("version")?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = cur.u64("tensor count")?;
        let n_kv = cur.u64("metadata count")?;

        // Each metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info
        // at least 8 + 4 + 8 + 4 + 8. Reject counts the file cannot hold before allocating.
        if n_kv > cur.left() / 13 {
            return Err(GgufError::Truncated {
                what: "metadata entries",
                offset: cur.pos() as u64,
                need: n_kv.saturating_mul(13),
                have: cur.left(),
            });
        }
        let mut meta = Vec::with_capacity(n_kv as usize);
        let mut keys: HashSet<&str> = HashSet::with_capacity(n_kv as usize);
        let mut alignment = DEFAULT_ALIGNMENT;
        for _ in 0..n_kv {
            let key_start = cur.pos() + 8;
            let key = cur.string("metadata key", MAX_KEY_LEN)?;
            if !keys.insert(key) {
                return Err(GgufError::DuplicateKey(key.to_string()));
            }
            let type_id = cur.u32("metadata value type")?;
            let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
                key: key.to_string(),
                type_id,
            })?;
            let val_start = cur.pos();
            let value = cur.value(ty, key, 1)?;
            if key == "general.alignment" {
                let a = match value {
                    Value::U32(a) => a as u64,
                    Value::U64(a) => a,
                    Value::I32(a) if a > 0 => a as u64,
                    other => return Err(GgufError::wrong_type(key, "UINT32", other.value_type())),
                };
                if a == 0 || !a.is_power_of_two() {
                    return Err(GgufError::BadAlignment(a));
                }
                alignment = a;
            }
            meta.push(MetaEntry {
                key_start,
                key_len: key.len(),
                ty,
                val_start,
            });
        }
        drop(keys);

        if n_tensors > cur.left() / 32 {
            return Err(GgufError::Truncated {
                what: "tensor infos",
                offset: cur.pos() as u64,
                need: n_tensors.saturating_mul(32),
                have: cur.left(),
            });
        }
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut names: HashSet<&str> = HashSet::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name_start = cur.pos() + 8;
            let name = cur.string("tensor name", MAX_KEY_LEN)?;
            if !names.insert(name) {
                return Err(GgufError::DuplicateTensor(name.to_string()));
            }
            let n_dims = cur.u32("tensor dimension count")?;
            if n_dims > MAX_DIMS {
                return Err(GgufError::TooManyDims {
                    name: name.to_string(),
                    n_dims,
                });
            }
            let mut dims = [1u64; 4];
            for d in dims.iter_mut().take(n_dims as usize) {
                *d = cur.u64("tensor dimension")?;
            }
            let type_id = cur.u32("tensor type")?;
            let ty = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
                name: name.to_string(),
                type_id,
            })?;
            let offset = cur.u64("tensor offset")?;
            let overflow = || GgufError::ShapeOverflow {
                name: name.to_string(),
                shape: dims[..n_dims as usize].to_vec(),
            };
            let rows = dims[1]
                .checked_mul(dims[2])
                .and_then(|r| r.checked_mul(dims[3]))
                .ok_or_else(overflow)?;
            // The element count must fit too (a zero dimension after huge ones gives 0 bytes but an
            // overflowing product in the order the dimensions are multiplied).
            dims.iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(overflow)?;
            if dims[0] % ty.block_elems() as u64 != 0 {
                return Err(GgufError::BadRowLength {
                    name: name.to_string(),
                    ty,
                    ne0: dims[0],
                    block: ty.block_elems(),
                });
            }
            let row_bytes = ty.row_bytes(dims[0]).ok_or_else(overflow)?;
            let n_bytes = row_bytes.checked_mul(rows).ok_or_else(overflow)?;
            if offset % alignment != 0 {
                return Err(GgufError::MisalignedTensor {
                    name: name.to_string(),
                    offset,
                    alignment,
                });
            }
            tensors.push(TensorInfo {
                name_start,
                name_len: name.len(),
                ty,
                dims,
                n_dims,
                offset,
                file_offset: 0,
                n_bytes,
            });
        }
        drop(names);

        let data_offset = (cur.pos() as u64)
            .div_ceil(alignment)
            .checked_mul(alignment)
            .unwrap_or(u64::MAX);
        for t in tensors.iter_mut() {
            let name = &buf[t.name_start..t.name_start + t.name_len];
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes));
            match (start, end) {
                (Some(s), Some(e)) if e <= file_len => t.file_offset = s,
                _ => {
                    return Err(GgufError::TensorOutOfBounds {
                        name: String::from_utf8_lossy(name).into_owned(),
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        file_len,
                    })
                }
            }
        }
        // No two tensors may share bytes.
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by_key(|&i| tensors[i].file_offset);
        for w in order.windows(2) {
            let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
            if a.n_bytes > 0 && b.n_bytes > 0 && a.file_offset + a.n_bytes > b.file_offset {
                let name = |t: &TensorInfo| {
                    String::from_utf8_lossy(&buf[t.name_start..t.name_start + t.name_len])
                        .into_owned()
                };
                return Err(GgufError::TensorOverlap {
                    a: name(a),
                    b: name(b),
                });
            }
        }

        Ok((version, alignment, meta, tensors, data_offset))
    }

    /// The whole file's bytes (the map).
    pub fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Size of the whole file in bytes.
    pub fn file_len(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// True when the bytes come from a memory map (not a heap copy).
    pub fn is_mapped(&self) -> bool {
        matches!(self.backing, Backing::Mmap(_))
    }

    fn str_at(&self, start: usize, len: usize) -> &str {
        // Validated as UTF-8 during parsing; fall back to "" rather than panic.
        std::str::from_utf8(&self.bytes()[start..start + len]).unwrap_or("")
    }

    fn entry_value(&self, e: &MetaEntry) -> Value<'_> {
        let key = self.str_at(e.key_start, e.key_len);
        // Parsed successfully once already, so this cannot fail; U8(0) keeps it panic-free regardless.
        Cursor::new(self.bytes(), e.val_start)
            .value(e.ty, key, 1)
            .unwrap_or(Value::U8(0))
    }

    /// All metadata entries in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, Value<'_>)> + '_ {
        self.meta
            .iter()
            .map(move |e| (self.str_at(e.key_start, e.key_len), self.entry_value(e)))
    }

    pub fn n_metadata(&self) -> usize {
        self.meta.len()
    }

    pub fn get(&self, key: &str) -> Option<Value<'_>> {
        self.meta
            .iter()
            .find(|e| self.str_at(e.key_start, e.key_len) == key)
            .map(|e| self.entry_value(e))
    }

    fn require(&self, key: &str) -> Result<Value<'_>, GgufError> {
        self.get(key)
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            Value::Str(s) => Ok(s),
            v => Err(GgufError::wrong_type(key, "STRING", v.value_type())),
        }
    }

    fn get_int<T: TryFrom<i128>>(&self, key: &str, expected: &'static str) -> Result<T, GgufError> {
        let v = self.require(key)?;
        let i = v
            .as_i128()
            .ok_or_else(|| GgufError::wrong_type(key, expected, v.value_type()))?;
        T::try_from(i).map_err(|_| GgufError::OutOfRange {
            key: key.to_string(),
            value: i.to_string(),
            expected,
        })
    }

    /// Any integer type whose value fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.get_int(key, "UINT32")
    }

    /// Any integer type whose value fits in u64.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get_int(key, "UINT64")
    }

    /// Any integer type whose value fits in i64.
    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.get_int(key, "INT64")
    }

    /// FLOAT32 or FLOAT64.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        match self.require(key)? {
            Value::F32(v) => Ok(v),
            Value::F64(v) => Ok(v as f32),
            v => Err(GgufError::wrong_type(key, "FLOAT32", v.value_type())),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.require(key)? {
            Value::Bool(b) => Ok(b),
            v => Err(GgufError::wrong_type(key, "BOOL", v.value_type())),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<ArrayRef<'_>, GgufError> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            v => Err(GgufError::wrong_type(key, "ARRAY", v.value_type())),
        }
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn n_tensors(&self) -> usize {
        self.tensors.len()
    }

    pub fn tensor_name(&self, t: &TensorInfo) -> &str {
        self.str_at(t.name_start, t.name_len)
    }

    fn view(&self, t: &TensorInfo) -> TensorView<'_> {
        let start = t.file_offset as usize;
        TensorView {
            name: self.tensor_name(t),
            ty: t.ty,
            dims: t.dims,
            n_dims: t.n_dims,
            data: &self.bytes()[start..start + t.n_bytes as usize],
        }
    }

    /// All tensors in file order, as views into the map.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> + '_ {
        self.tensors.iter().map(move |t| self.view(t))
    }

    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        self.tensors
            .iter()
            .find(|t| self.tensor_name(t) == name)
            .map(|t| self.view(t))
    }
}
