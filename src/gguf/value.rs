//! Metadata values: borrowed views (`Value`, `ArrayRef`) into the file and owned values for writing.

use super::GgufError;

/// GGUF metadata value type ids (`gguf_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Fixed size in bytes of a scalar of this type (`None` for strings and arrays).
    pub fn scalar_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// The name gguf-py uses (`UINT32`, `STRING`, ...).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "UINT8",
            I8 => "INT8",
            U16 => "UINT16",
            I16 => "INT16",
            U32 => "UINT32",
            I32 => "INT32",
            F32 => "FLOAT32",
            Bool => "BOOL",
            String => "STRING",
            Array => "ARRAY",
            U64 => "UINT64",
            I64 => "INT64",
            F64 => "FLOAT64",
        }
    }
}

/// A metadata value borrowed from the file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(&'a str),
    Array(ArrayRef<'a>),
}

impl<'a> Value<'a> {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F32(_) => ValueType::F32,
            Value::F64(_) => ValueType::F64,
            Value::Bool(_) => ValueType::Bool,
            Value::Str(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
        }
    }

    /// The value as a signed 128-bit integer, for any integer type.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v as i128,
            Value::I8(v) => v as i128,
            Value::U16(v) => v as i128,
            Value::I16(v) => v as i128,
            Value::U32(v) => v as i128,
            Value::I32(v) => v as i128,
            Value::U64(v) => v as i128,
            Value::I64(v) => v as i128,
            _ => return None,
        })
    }

    /// The value as f64, for float and integer types.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i128().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Copy into an owned value (for rewriting metadata).
    pub fn to_owned_value(&self) -> OwnedValue {
        match *self {
            Value::U8(v) => OwnedValue::U8(v),
            Value::I8(v) => OwnedValue::I8(v),
            Value::U16(v) => OwnedValue::U16(v),
            Value::I16(v) => OwnedValue::I16(v),
            Value::U32(v) => OwnedValue::U32(v),
            Value::I32(v) => OwnedValue::I32(v),
            Value::U64(v) => OwnedValue::U64(v),
            Value::I64(v) => OwnedValue::I64(v),
            Value::F32(v) => OwnedValue::F32(v),
            Value::F64(v) => OwnedValue::F64(v),
            Value::Bool(v) => OwnedValue::Bool(v),
            Value::Str(s) => OwnedValue::Str(s.to_string()),
            Value::Array(a) => OwnedValue::Array(
                a.elem_type(),
                a.iter().map(|v| v.to_owned_value()).collect(),
            ),
        }
    }
}

impl std::fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Array(a) => write!(f, "[{}; {}]", a.elem_type().name(), a.len()),
        }
    }
}

/// An array borrowed from the file: element type, count and the bytes of its elements (validated
/// at parse time, so iteration cannot run past them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArrayRef<'a> {
    pub(crate) elem: ValueType,
    pub(crate) len: u64,
    pub(crate) bytes: &'a [u8],
}

impl<'a> ArrayRef<'a> {
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw little-endian bytes of the elements.
    pub fn raw_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Iterate the elements. The array was validated when the file was parsed; should the bytes end
    /// early anyway, iteration stops rather than panicking.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            elem: self.elem,
            left: self.len,
            bytes: self.bytes,
            pos: 0,
        }
    }

    /// Iterate string elements (empty when the element type is not STRING).
    pub fn strings(&self) -> impl Iterator<Item = &'a str> + 'a {
        let it = if self.elem == ValueType::String {
            self.iter()
        } else {
            ArrayIter::empty()
        };
        it.filter_map(|v| v.as_str())
    }

    /// Numeric elements as f32 (float arrays, or integers converted).
    pub fn to_f32_vec(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        if matches!(
            self.elem,
            ValueType::String | ValueType::Array | ValueType::Bool
        ) {
            return Err(GgufError::wrong_type(key, "numeric array", self.elem));
        }
        Ok(self
            .iter()
            .filter_map(|v| v.as_f64())
            .map(|v| v as f32)
            .collect())
    }

    /// Integer elements as i32 (values that do not fit are an error).
    pub fn to_i32_vec(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        let mut out = Vec::with_capacity(self.len());
        for v in self.iter() {
            let i = v
                .as_i128()
                .ok_or_else(|| GgufError::wrong_type(key, "integer array", self.elem))?;
            let i = i32::try_from(i).map_err(|_| GgufError::OutOfRange {
                key: key.to_string(),
                value: i.to_string(),
                expected: "i32",
            })?;
            out.push(i);
        }
        Ok(out)
    }
}

/// Iterator over an [`ArrayRef`].
pub struct ArrayIter<'a> {
    elem: ValueType,
    left: u64,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> ArrayIter<'a> {
    fn empty() -> Self {
        ArrayIter {
            elem: ValueType::U8,
            left: 0,
            bytes: &[],
            pos: 0,
        }
    }
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut cur = super::reader::Cursor::new(self.bytes, self.pos);
        match cur.value(self.elem, "", 1) {
            Ok(v) => {
                self.pos = cur.pos();
                Some(v)
            }
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

/// An owned metadata value, for the writer.
#[derive(Clone, Debug, PartialEq)]
pub enum OwnedValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    /// Element type and elements (all of that type).
    Array(ValueType, Vec<OwnedValue>),
}

impl OwnedValue {
    pub fn value_type(&self) -> ValueType {
        match self {
            OwnedValue::U8(_) => ValueType::U8,
            OwnedValue::I8(_) => ValueType::I8,
            OwnedValue::U16(_) => ValueType::U16,
            OwnedValue::I16(_) => ValueType::I16,
            OwnedValue::U32(_) => ValueType::U32,
            OwnedValue::I32(_) => ValueType::I32,
            OwnedValue::U64(_) => ValueType::U64,
            OwnedValue::I64(_) => ValueType::I64,
            OwnedValue::F32(_) => ValueType::F32,
            OwnedValue::F64(_) => ValueType::F64,
            OwnedValue::Bool(_) => ValueType::Bool,
            OwnedValue::Str(_) => ValueType::String,
            OwnedValue::Array(..) => ValueType::Array,
        }
    }

    /// An array of strings.
    pub fn str_array<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> OwnedValue {
        OwnedValue::Array(
            ValueType::String,
            items
                .into_iter()
                .map(|s| OwnedValue::Str(s.as_ref().to_string()))
                .collect(),
        )
    }
}
