//! A small, safe reader for Python pickles (protocols 2–5, the opcodes `torch.save` writes).
//!
//! Nothing is ever executed: `GLOBAL`/`STACK_GLOBAL` only record the name, and `REDUCE`/`NEWOBJ`
//! produce a [`Value::Call`] describing the call. The one exception is `collections.OrderedDict()`
//! with no arguments, which becomes an empty [`Value::Dict`] so that the `SETITEMS` that follow it
//! (as in every PyTorch state dict) have somewhere to go.
//!
//! Objects live in an arena while the machine runs, so the memo shares them the way Python does
//! (an object memoised before it is filled is seen filled); the result is then copied out into a
//! plain [`Value`] tree, with limits on depth (which also catches self-referencing structures)
//! and on total size (which stops a small file from expanding into a huge tree through the memo).
//! The machine itself counts, as it runs, every object, stack entry, memo entry and mark it makes
//! and every byte of string it copies, against the same bounds ([`MAX_OBJECTS`],
//! [`MAX_PAYLOAD_BYTES`]), so no pickle makes it allocate more than about 200 MB before failing.
//! Every length field is checked against the bytes that remain before anything is allocated.

use std::collections::HashMap;
use std::fmt;

/// A decoded pickle object.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer outside `i64`: little-endian two's-complement bytes, as pickled (`LONG1`/`LONG4`).
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Key/value pairs in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A reference to a Python global (class or function), recorded, never resolved.
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)` from `REDUCE`, or `cls.__new__(cls, *args)` from `NEWOBJ`.
    Call {
        callable: Box<Value>,
        args: Box<Value>,
    },
    /// `object.__setstate__(state)` from `BUILD`.
    Build {
        object: Box<Value>,
        state: Box<Value>,
    },
    /// A persistent id (`BINPERSID`/`PERSID`); PyTorch uses these for tensor storages.
    PersistentId(Box<Value>),
}

impl Value {
    /// A short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global { .. } => "global",
            Value::Call { .. } => "call",
            Value::Build { .. } => "built object",
            Value::PersistentId(_) => "persistent id",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The items of a tuple or a list.
    pub fn as_sequence(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Whether this is the global `module.name`.
    pub fn is_global(&self, module: &str, name: &str) -> bool {
        matches!(self, Value::Global { module: m, name: n } if m == module && n == name)
    }

    /// Looks up a string key in a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
}

/// Why a pickle could not be read; `offset` is the byte offset of the failing opcode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickleError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pickle byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for PickleError {}

/// Highest pickle protocol understood.
pub const MAX_PROTOCOL: u8 = 5;
/// Deepest nesting of containers accepted (also the guard against self-referencing objects).
pub const MAX_DEPTH: usize = 200;
/// Most objects a pickle may make while it is read (every object created, every push onto the
/// stack, memo entry and mark counts one), and most objects the decoded tree may hold, counting
/// copies made through the memo. A VGG19 state dict takes a few thousand; the bound keeps what a
/// hostile pickle can make the reader allocate to about 150 MB.
pub const MAX_OBJECTS: usize = 1_000_000;
/// Most string and byte content a pickle may create while it is read, and that the decoded tree
/// may hold once shared objects are copied. A state dict's keys take a few kilobytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 20;
/// Longest text line (`GLOBAL`, `PERSID`).
const MAX_LINE: usize = 4096;

/// Reads one pickle starting at `start`; returns the value and the offset just past its `STOP`.
pub fn parse_at(data: &[u8], start: usize) -> Result<(Value, usize), PickleError> {
    parse_measured(data, start).map(|(value, end, _)| (value, end))
}

/// [`parse_at`], also returning how much of [`MAX_OBJECTS`] and [`MAX_PAYLOAD_BYTES`] the
/// machine spent: what sizing those bounds against real checkpoints needs.
pub(crate) fn parse_measured(
    data: &[u8],
    start: usize,
) -> Result<(Value, usize, (usize, usize)), PickleError> {
    let mut m = Machine {
        data,
        pos: start,
        op_start: start,
        arena: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        objects: 0,
        payload: 0,
    };
    let top = m.run()?;
    let end = m.pos;
    let mut budget = Budget {
        objects: MAX_OBJECTS,
        payload: MAX_PAYLOAD_BYTES,
    };
    let value = m.materialize(top, 0, &mut budget)?;
    Ok((value, end, (m.objects, m.payload)))
}

/// Reads a whole pickle; bytes after its `STOP` are an error.
pub fn parse(data: &[u8]) -> Result<Value, PickleError> {
    let (value, end) = parse_at(data, 0)?;
    if end != data.len() {
        return Err(PickleError {
            offset: end,
            message: format!("{} unexpected bytes after STOP", data.len() - end),
        });
    }
    Ok(value)
}

type Id = usize;

/// An object in the arena. Leaves hold their [`Value`]; containers hold arena ids.
enum Node {
    Leaf(Value),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Call { callable: Id, args: Id },
    Build { object: Id, state: Id },
    PersistentId(Id),
}

struct Budget {
    objects: usize,
    payload: usize,
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_start: usize,
    arena: Vec<Node>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
    /// Spent so far of [`MAX_OBJECTS`] and [`MAX_PAYLOAD_BYTES`]: checked as the machine runs,
    /// so that no pickle can make it allocate more than those allow before failing.
    objects: usize,
    payload: usize,
}

// Opcodes (pickletools names).
const MARK: u8 = b'(';
const STOP: u8 = b'.';
const POP: u8 = b'0';
const POP_MARK: u8 = b'1';
const DUP: u8 = b'2';
const BINFLOAT: u8 = b'G';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const NONE: u8 = b'N';
const PERSID: u8 = b'P';
const BINPERSID: u8 = b'Q';
const REDUCE: u8 = b'R';
const BINSTRING: u8 = b'T';
const SHORT_BINSTRING: u8 = b'U';
const BINUNICODE: u8 = b'X';
const APPEND: u8 = b'a';
const BUILD: u8 = b'b';
const GLOBAL: u8 = b'c';
const APPENDS: u8 = b'e';
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const SETITEM: u8 = b's';
const TUPLE: u8 = b't';
const SETITEMS: u8 = b'u';
const EMPTY_DICT: u8 = b'}';
const EMPTY_LIST: u8 = b']';
const EMPTY_TUPLE: u8 = b')';
const BINBYTES: u8 = b'B';
const SHORT_BINBYTES: u8 = b'C';
const PROTO: u8 = 0x80;
const NEWOBJ: u8 = 0x81;
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const LONG1: u8 = 0x8a;
const LONG4: u8 = 0x8b;
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE8: u8 = 0x8d;
const BINBYTES8: u8 = 0x8e;
const STACK_GLOBAL: u8 = 0x93;
const MEMOIZE: u8 = 0x94;
const FRAME: u8 = 0x95;

impl<'a> Machine<'a> {
    fn err(&self, message: impl Into<String>) -> PickleError {
        PickleError {
            offset: self.op_start,
            message: message.into(),
        }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Takes `n` bytes, checking first that they exist (so a corrupt length allocates nothing).
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], PickleError> {
        if n > self.remaining() as u64 {
            return Err(self.err(format!(
                "{what} needs {n} bytes but only {} remain (truncated or corrupt length)",
                self.remaining()
            )));
        }
        let n = n as usize;
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn take_array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], PickleError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &str) -> Result<u8, PickleError> {
        Ok(self.take_array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, PickleError> {
        Ok(u16::from_le_bytes(self.take_array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.take_array(what)?))
    }

    fn i32(&mut self, what: &str) -> Result<i32, PickleError> {
        Ok(i32::from_le_bytes(self.take_array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.take_array(what)?))
    }

    fn line(&mut self, what: &str) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let window = &rest[..rest.len().min(MAX_LINE + 1)];
        let Some(n) = window.iter().position(|&b| b == b'\n') else {
            return Err(self.err(format!(
                "{what}: no end of line within {MAX_LINE} bytes (truncated or corrupt)"
            )));
        };
        let text = std::str::from_utf8(&window[..n])
            .map_err(|_| self.err(format!("{what} is not valid UTF-8")))?
            .to_string();
        self.pos += n + 1;
        Ok(text)
    }

    fn utf8(&self, bytes: &[u8], what: &str) -> Result<String, PickleError> {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.err(format!("{what} is not valid UTF-8")))
    }

    /// Takes `n` bytes as a UTF-8 string and pushes it: every string opcode after its length.
    fn push_string(&mut self, n: u64, what: &str) -> Result<(), PickleError> {
        let bytes = self.take(n, what)?;
        let s = self.utf8(bytes, what)?;
        self.push_leaf(Value::Str(s))
    }

    /// Counts one more object (or stack slot, memo entry, mark) against [`MAX_OBJECTS`].
    fn spend_object(&mut self) -> Result<(), PickleError> {
        self.objects += 1;
        if self.objects > MAX_OBJECTS {
            return Err(self.err(format!(
                "more than {MAX_OBJECTS} objects, stack entries and memo entries"
            )));
        }
        Ok(())
    }

    /// Counts `n` more bytes of strings against [`MAX_PAYLOAD_BYTES`].
    fn spend_payload(&mut self, n: usize) -> Result<(), PickleError> {
        self.payload = self.payload.saturating_add(n);
        if self.payload > MAX_PAYLOAD_BYTES {
            return Err(self.err(format!(
                "more than {MAX_PAYLOAD_BYTES} bytes of strings and bytes"
            )));
        }
        Ok(())
    }

    fn alloc(&mut self, node: Node) -> Result<Id, PickleError> {
        self.spend_object()?;
        if let Node::Leaf(v) = &node {
            self.spend_payload(payload_of(v))?;
        }
        self.arena.push(node);
        Ok(self.arena.len() - 1)
    }

    fn push_id(&mut self, id: Id) -> Result<(), PickleError> {
        self.spend_object()?;
        self.stack.push(id);
        Ok(())
    }

    fn push(&mut self, node: Node) -> Result<(), PickleError> {
        let id = self.alloc(node)?;
        self.push_id(id)
    }

    fn push_leaf(&mut self, v: Value) -> Result<(), PickleError> {
        self.push(Node::Leaf(v))
    }

    fn pop(&mut self, op: &str) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err(format!("{op}: stack underflow")));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.err(format!("{op}: stack underflow")))
    }

    fn top(&self, op: &str) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err(format!("{op}: stack underflow")));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.err(format!("{op}: stack underflow")))
    }

    /// Pops everything above the last MARK, and the mark.
    fn pop_mark(&mut self, op: &str) -> Result<Vec<Id>, PickleError> {
        let Some(mark) = self.marks.pop() else {
            return Err(self.err(format!("{op} without a preceding MARK")));
        };
        Ok(self.stack.split_off(mark))
    }

    fn memo_put(&mut self, key: u32, op: &str) -> Result<(), PickleError> {
        let id = self.top(op)?;
        if self.memo.insert(key, id).is_none() {
            self.spend_object()?;
        }
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        let Some(&id) = self.memo.get(&key) else {
            return Err(self.err(format!("memo entry {key} is read before it is written")));
        };
        self.push_id(id)
    }

    fn leaf(&self, id: Id) -> Option<&Value> {
        match &self.arena[id] {
            Node::Leaf(v) => Some(v),
            _ => None,
        }
    }

    fn node_kind(&self, id: Id) -> &'static str {
        match &self.arena[id] {
            Node::Leaf(v) => v.kind(),
            Node::Tuple(_) => "tuple",
            Node::List(_) => "list",
            Node::Dict(_) => "dict",
            Node::Call { .. } => "call",
            Node::Build { .. } => "built object",
            Node::PersistentId(_) => "persistent id",
        }
    }

    fn run(&mut self) -> Result<Id, PickleError> {
        loop {
            self.op_start = self.pos;
            if self.pos >= self.data.len() {
                return Err(self.err("pickle ends without STOP (truncated)"));
            }
            let op = self.data[self.pos];
            self.pos += 1;
            match op {
                PROTO => {
                    let v = self.u8("PROTO")?;
                    if v > MAX_PROTOCOL {
                        return Err(self.err(format!("unsupported pickle protocol {v}")));
                    }
                }
                FRAME => {
                    let n = self.u64("FRAME")?;
                    if n > self.remaining() as u64 {
                        return Err(self.err(format!(
                            "FRAME of {n} bytes but only {} remain (truncated or corrupt length)",
                            self.remaining()
                        )));
                    }
                }
                STOP => {
                    if !self.marks.is_empty() {
                        return Err(self.err("STOP with an unclosed MARK"));
                    }
                    if self.stack.len() != 1 {
                        return Err(self.err(format!(
                            "STOP with {} objects on the stack (expected 1)",
                            self.stack.len()
                        )));
                    }
                    return self.pop("STOP");
                }
                MARK => {
                    self.spend_object()?;
                    self.marks.push(self.stack.len());
                }
                POP => {
                    if self.stack.len() > self.marks.last().copied().unwrap_or(0) {
                        self.stack.pop();
                    } else {
                        self.pop_mark("POP")?;
                    }
                }
                POP_MARK => {
                    self.pop_mark("POP_MARK")?;
                }
                DUP => {
                    let id = self.top("DUP")?;
                    self.push_id(id)?;
                }
                NONE => self.push_leaf(Value::None)?,
                NEWTRUE => self.push_leaf(Value::Bool(true))?,
                NEWFALSE => self.push_leaf(Value::Bool(false))?,
                BININT => {
                    let v = self.i32("BININT")?;
                    self.push_leaf(Value::Int(v.into()))?;
                }
                BININT1 => {
                    let v = self.u8("BININT1")?;
                    self.push_leaf(Value::Int(v.into()))?;
                }
                BININT2 => {
                    let v = self.u16("BININT2")?;
                    self.push_leaf(Value::Int(v.into()))?;
                }
                LONG1 => {
                    let n = self.u8("LONG1")?;
                    let bytes = self.take(n.into(), "LONG1")?;
                    self.push_leaf(long_value(bytes))?;
                }
                LONG4 => {
                    let n = self.i32("LONG4")?;
                    if n < 0 {
                        return Err(self.err(format!("LONG4 with negative length {n}")));
                    }
                    let bytes = self.take(n as u64, "LONG4")?;
                    self.push_leaf(long_value(bytes))?;
                }
                BINFLOAT => {
                    let v = f64::from_be_bytes(self.take_array("BINFLOAT")?);
                    self.push_leaf(Value::Float(v))?;
                }
                BINUNICODE => {
                    let n = self.u32("BINUNICODE")?;
                    self.push_string(n.into(), "BINUNICODE")?;
                }
                SHORT_BINUNICODE => {
                    let n = self.u8("SHORT_BINUNICODE")?;
                    self.push_string(n.into(), "SHORT_BINUNICODE")?;
                }
                BINUNICODE8 => {
                    let n = self.u64("BINUNICODE8")?;
                    self.push_string(n, "BINUNICODE8")?;
                }
                // Python 2 `str`; torch.load decodes these as UTF-8.
                BINSTRING => {
                    let n = self.i32("BINSTRING")?;
                    if n < 0 {
                        return Err(self.err(format!("BINSTRING with negative length {n}")));
                    }
                    self.push_string(n as u64, "BINSTRING")?;
                }
                SHORT_BINSTRING => {
                    let n = self.u8("SHORT_BINSTRING")?;
                    self.push_string(n.into(), "SHORT_BINSTRING")?;
                }
                BINBYTES => {
                    let n = self.u32("BINBYTES")?;
                    let b = self.take(n.into(), "BINBYTES")?.to_vec();
                    self.push_leaf(Value::Bytes(b))?;
                }
                SHORT_BINBYTES => {
                    let n = self.u8("SHORT_BINBYTES")?;
                    let b = self.take(n.into(), "SHORT_BINBYTES")?.to_vec();
                    self.push_leaf(Value::Bytes(b))?;
                }
                BINBYTES8 => {
                    let n = self.u64("BINBYTES8")?;
                    let b = self.take(n, "BINBYTES8")?.to_vec();
                    self.push_leaf(Value::Bytes(b))?;
                }
                EMPTY_TUPLE => self.push(Node::Tuple(Vec::new()))?,
                EMPTY_LIST => self.push(Node::List(Vec::new()))?,
                EMPTY_DICT => self.push(Node::Dict(Vec::new()))?,
                TUPLE => {
                    let items = self.pop_mark("TUPLE")?;
                    self.push(Node::Tuple(items))?;
                }
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let n = usize::from(op - TUPLE1) + 1;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop("TUPLE1/2/3")?);
                    }
                    items.reverse();
                    self.push(Node::Tuple(items))?;
                }
                BINPUT => {
                    let k = self.u8("BINPUT")?;
                    self.memo_put(k.into(), "BINPUT")?;
                }
                LONG_BINPUT => {
                    let k = self.u32("LONG_BINPUT")?;
                    self.memo_put(k, "LONG_BINPUT")?;
                }
                MEMOIZE => {
                    let k = u32::try_from(self.memo.len()).map_err(|_| self.err("memo is full"))?;
                    self.memo_put(k, "MEMOIZE")?;
                }
                BINGET => {
                    let k = self.u8("BINGET")?;
                    self.memo_get(k.into())?;
                }
                LONG_BINGET => {
                    let k = self.u32("LONG_BINGET")?;
                    self.memo_get(k)?;
                }
                GLOBAL => {
                    let module = self.line("GLOBAL module")?;
                    let name = self.line("GLOBAL name")?;
                    self.push_leaf(Value::Global { module, name })?;
                }
                STACK_GLOBAL => {
                    let name = self.pop("STACK_GLOBAL")?;
                    let module = self.pop("STACK_GLOBAL")?;
                    let (Some(Value::Str(module)), Some(Value::Str(name))) =
                        (self.leaf(module), self.leaf(name))
                    else {
                        return Err(self.err("STACK_GLOBAL needs two strings on the stack"));
                    };
                    let g = Value::Global {
                        module: module.clone(),
                        name: name.clone(),
                    };
                    self.push_leaf(g)?;
                }
                REDUCE | NEWOBJ => {
                    let args = self.pop("REDUCE")?;
                    let callable = self.pop("REDUCE")?;
                    let is_ordered_dict = self
                        .leaf(callable)
                        .is_some_and(|c| c.is_global("collections", "OrderedDict"));
                    let no_args = matches!(&self.arena[args], Node::Tuple(t) if t.is_empty());
                    if is_ordered_dict && no_args {
                        self.push(Node::Dict(Vec::new()))?;
                    } else {
                        self.push(Node::Call { callable, args })?;
                    }
                }
                BUILD => {
                    let state = self.pop("BUILD")?;
                    let target = self.top("BUILD")?;
                    // Keep the target's id (the memo may refer to it) and move its old content.
                    let old = std::mem::replace(&mut self.arena[target], Node::Leaf(Value::None));
                    let object = self.alloc(old)?;
                    self.arena[target] = Node::Build { object, state };
                }
                BINPERSID => {
                    let pid = self.pop("BINPERSID")?;
                    self.push(Node::PersistentId(pid))?;
                }
                PERSID => {
                    let pid = self.line("PERSID")?;
                    let id = self.alloc(Node::Leaf(Value::Str(pid)))?;
                    self.push(Node::PersistentId(id))?;
                }
                SETITEM => {
                    let value = self.pop("SETITEM")?;
                    let key = self.pop("SETITEM")?;
                    let target = self.top("SETITEM")?;
                    self.dict_insert(target, &[key, value], "SETITEM")?;
                }
                SETITEMS => {
                    let items = self.pop_mark("SETITEMS")?;
                    if items.len() % 2 != 0 {
                        return Err(self.err("SETITEMS with an odd number of items"));
                    }
                    let target = self.top("SETITEMS")?;
                    self.dict_insert(target, &items, "SETITEMS")?;
                }
                APPEND => {
                    let value = self.pop("APPEND")?;
                    let target = self.top("APPEND")?;
                    self.list_extend(target, &[value], "APPEND")?;
                }
                APPENDS => {
                    let items = self.pop_mark("APPENDS")?;
                    let target = self.top("APPENDS")?;
                    self.list_extend(target, &items, "APPENDS")?;
                }
                other => {
                    let shown = if other.is_ascii_graphic() {
                        format!(" ('{}')", other as char)
                    } else {
                        String::new()
                    };
                    return Err(self.err(format!("unsupported pickle opcode 0x{other:02x}{shown}")));
                }
            }
        }
    }

    fn dict_insert(&mut self, target: Id, pairs: &[Id], op: &str) -> Result<(), PickleError> {
        let kind = self.node_kind(target);
        match &mut self.arena[target] {
            Node::Dict(d) => {
                d.extend(pairs.chunks_exact(2).map(|kv| (kv[0], kv[1])));
                Ok(())
            }
            _ => Err(self.err(format!("{op} on a {kind}, expected a dict"))),
        }
    }

    fn list_extend(&mut self, target: Id, items: &[Id], op: &str) -> Result<(), PickleError> {
        let kind = self.node_kind(target);
        match &mut self.arena[target] {
            Node::List(l) => {
                l.extend_from_slice(items);
                Ok(())
            }
            _ => Err(self.err(format!("{op} on a {kind}, expected a list"))),
        }
    }

    /// Copies an arena object out into a [`Value`] tree, within the depth and size limits.
    fn materialize(&self, id: Id, depth: usize, budget: &mut Budget) -> Result<Value, PickleError> {
        let fail = |message: String| PickleError {
            offset: self.pos,
            message,
        };
        if depth > MAX_DEPTH {
            return Err(fail(format!(
                "objects nested deeper than {MAX_DEPTH} levels (or a self-referencing object)"
            )));
        }
        if budget.objects == 0 {
            return Err(fail(format!("more than {MAX_OBJECTS} objects")));
        }
        budget.objects -= 1;
        let d = depth + 1;
        Ok(match &self.arena[id] {
            Node::Leaf(v) => {
                let payload = payload_of(v);
                if payload > budget.payload {
                    return Err(fail(format!(
                        "more than {MAX_PAYLOAD_BYTES} bytes of strings once shared objects are copied"
                    )));
                }
                budget.payload -= payload;
                v.clone()
            }
            Node::Tuple(items) => Value::Tuple(self.materialize_all(items, d, budget)?),
            Node::List(items) => Value::List(self.materialize_all(items, d, budget)?),
            Node::Dict(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for &(k, v) in pairs {
                    out.push((
                        self.materialize(k, d, budget)?,
                        self.materialize(v, d, budget)?,
                    ));
                }
                Value::Dict(out)
            }
            Node::Call { callable, args } => Value::Call {
                callable: Box::new(self.materialize(*callable, d, budget)?),
                args: Box::new(self.materialize(*args, d, budget)?),
            },
            Node::Build { object, state } => Value::Build {
                object: Box::new(self.materialize(*object, d, budget)?),
                state: Box::new(self.materialize(*state, d, budget)?),
            },
            Node::PersistentId(pid) => {
                Value::PersistentId(Box::new(self.materialize(*pid, d, budget)?))
            }
        })
    }

    fn materialize_all(
        &self,
        ids: &[Id],
        depth: usize,
        budget: &mut Budget,
    ) -> Result<Vec<Value>, PickleError> {
        ids.iter()
            .map(|&i| self.materialize(i, depth, budget))
            .collect()
    }
}

/// Bytes of strings a leaf holds.
fn payload_of(v: &Value) -> usize {
    match v {
        Value::Str(s) => s.len(),
        Value::Bytes(b) | Value::BigInt(b) => b.len(),
        Value::Global { module, name } => module.len() + name.len(),
        _ => 0,
    }
}

/// A `LONG1`/`LONG4` payload: an `Int` when it fits in `i64`, else the raw bytes.
fn long_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let fill = if negative { 0xff } else { 0x00 };
    // Drop redundant sign-extension bytes.
    let mut n = bytes.len();
    while n > 1 && bytes[n - 1] == fill && (bytes[n - 2] & 0x80 != 0) == negative {
        n -= 1;
    }
    if n <= 8 {
        let mut a = [fill; 8];
        a[..n].copy_from_slice(&bytes[..n]);
        Value::Int(i64::from_le_bytes(a))
    } else {
        Value::BigInt(bytes[..n].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::Str(x.to_string())
    }

    fn err_of(data: &[u8]) -> PickleError {
        match parse(data) {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn protocol2_scalars_containers_and_big_ints() {
        // python3: pickle.dumps({'a': 1, 'b': [1.5, None, True, False], 'c': (1, 2, 3), 'e': 'é',
        //   'big': 2**70, 'neg': -5, 'i2': 1000, 'i4': 100000, 'nbig': -2**70}, protocol=2)
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(G?\xf8\x00\x00\x00\x00\x00\x00N\x88\x89eX\x01\x00\x00\x00cq\x04K\x01K\x02K\x03\x87q\x05X\x01\x00\x00\x00eq\x06X\x02\x00\x00\x00\xc3\xa9q\x07X\x03\x00\x00\x00bigq\x08\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@X\x03\x00\x00\x00negq\x09J\xfb\xff\xff\xffX\x02\x00\x00\x00i2q\x0aM\xe8\x03X\x02\x00\x00\x00i4q\x0bJ\xa0\x86\x01\x00X\x04\x00\x00\x00nbigq\x0c\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\xc0u.";
        let v = parse(data).unwrap();
        let expected = Value::Dict(vec![
            (s("a"), Value::Int(1)),
            (
                s("b"),
                Value::List(vec![
                    Value::Float(1.5),
                    Value::None,
                    Value::Bool(true),
                    Value::Bool(false),
                ]),
            ),
            (
                s("c"),
                Value::Tuple(vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
            ),
            (s("e"), s("é")),
            (s("big"), Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 0x40])),
            (s("neg"), Value::Int(-5)),
            (s("i2"), Value::Int(1000)),
            (s("i4"), Value::Int(100000)),
            (s("nbig"), Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 0xc0])),
        ]);
        assert_eq!(v, expected);
        assert_eq!(v.get("i4"), Some(&Value::Int(100000)));
    }

    #[test]
    fn integer_edge_cases() {
        // python3: pickle.dumps((-1, -129, 2**63 - 1, -2**63, 2**63, 255, 65535, -2**31), protocol=2)
        let data = b"\x80\x02(J\xff\xff\xff\xffJ\x7f\xff\xff\xff\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00K\xffM\xff\xffJ\x00\x00\x00\x80tq\x00.";
        let v = parse(data).unwrap();
        assert_eq!(
            v,
            Value::Tuple(vec![
                Value::Int(-1),
                Value::Int(-129),
                Value::Int(i64::MAX),
                Value::Int(i64::MIN),
                Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0x80, 0]),
                Value::Int(255),
                Value::Int(65535),
                Value::Int(-(1 << 31)),
            ])
        );
    }

    #[test]
    fn torch_legacy_magic_number() {
        // python3: pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)
        let data = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.";
        assert_eq!(
            parse(data).unwrap(),
            Value::BigInt(vec![
                0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19
            ])
        );
    }

    #[test]
    fn globals_and_reduce_are_recorded_not_run() {
        // python3: pickle.dumps(b'xy', protocol=2)
        let data = b"\x80\x02c_codecs\x0aencode\x0aq\x00X\x02\x00\x00\x00xyq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.";
        assert_eq!(
            parse(data).unwrap(),
            Value::Call {
                callable: Box::new(Value::Global {
                    module: "_codecs".into(),
                    name: "encode".into()
                }),
                args: Box::new(Value::Tuple(vec![s("xy"), s("latin1")])),
            }
        );
    }

    #[test]
    fn protocol4_frames_memoize_stack_global_and_bytes() {
        // python3: pickle.dumps({'x': [1, 2], 'g': collections.OrderedDict, 'b': b'xy', 't': ()},
        //   protocol=4)
        let data = b"\x80\x04\x95A\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01x\x94]\x94(K\x01K\x02e\x8c\x01g\x94\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94\x8c\x01b\x94C\x02xy\x94\x8c\x01t\x94)u.";
        assert_eq!(
            parse(data).unwrap(),
            Value::Dict(vec![
                (s("x"), Value::List(vec![Value::Int(1), Value::Int(2)])),
                (
                    s("g"),
                    Value::Global {
                        module: "collections".into(),
                        name: "OrderedDict".into()
                    }
                ),
                (s("b"), Value::Bytes(b"xy".to_vec())),
                (s("t"), Value::Tuple(vec![])),
            ])
        );
    }

    #[test]
    fn long_strings_and_bytes() {
        // python3: pickle.dumps(['x' * 300, b'y' * 300], protocol=4)
        let mut data = b"\x80\x04\x95i\x02\x00\x00\x00\x00\x00\x00]\x94(X,\x01\x00\x00".to_vec();
        data.extend([b'x'; 300]);
        data.extend(b"\x94B,\x01\x00\x00");
        data.extend([b'y'; 300]);
        data.extend(b"\x94e.");
        assert_eq!(
            parse(&data).unwrap(),
            Value::List(vec![
                Value::Str("x".repeat(300)),
                Value::Bytes(vec![b'y'; 300])
            ])
        );
    }

    #[test]
    fn memo_shares_objects_filled_after_memoisation() {
        // python3: a = [1, 2]; pickle.dumps((a, a), protocol=2)
        let data = b"\x80\x02]q\x00(K\x01K\x02eh\x00\x86q\x01.";
        let a = Value::List(vec![Value::Int(1), Value::Int(2)]);
        assert_eq!(parse(data).unwrap(), Value::Tuple(vec![a.clone(), a]));
    }

    #[test]
    fn ordered_dict_with_metadata_becomes_built_dict() {
        // python3: o = collections.OrderedDict(); o['w'] = 1; o._metadata = {'v': 2};
        //   pickle.dumps(o, protocol=2)
        let data = b"\x80\x02ccollections\x0aOrderedDict\x0aq\x00)Rq\x01X\x01\x00\x00\x00wq\x02K\x01s}q\x03X\x09\x00\x00\x00_metadataq\x04}q\x05X\x01\x00\x00\x00vq\x06K\x02ssb.";
        assert_eq!(
            parse(data).unwrap(),
            Value::Build {
                object: Box::new(Value::Dict(vec![(s("w"), Value::Int(1))])),
                state: Box::new(Value::Dict(vec![(
                    s("_metadata"),
                    Value::Dict(vec![(s("v"), Value::Int(2))])
                )])),
            }
        );
    }

    #[test]
    fn persistent_ids() {
        // python3: class P(pickle.Pickler) whose persistent_id returns ('storage', 'k7') for the
        //   string 'STORAGE'; P(f, protocol=2).dump({'t': 'STORAGE'})
        let data = b"\x80\x02}q\x00X\x01\x00\x00\x00tq\x01X\x07\x00\x00\x00storageq\x02X\x02\x00\x00\x00k7q\x03\x86q\x04Qs.";
        assert_eq!(
            parse(data).unwrap(),
            Value::Dict(vec![(
                s("t"),
                Value::PersistentId(Box::new(Value::Tuple(vec![s("storage"), s("k7")])))
            )])
        );
        // Hand-written: PERSID with a text id.
        assert_eq!(
            parse(b"\x80\x02Pabc\n.").unwrap(),
            Value::PersistentId(Box::new(s("abc")))
        );
    }

    #[test]
    fn self_reference_is_an_error_not_a_hang() {
        // python3: r = []; r.append(r); pickle.dumps(r, protocol=2)
        let e = err_of(b"\x80\x02]q\x00h\x00a.");
        assert!(e.message.contains("self-referencing"), "{e}");
    }

    #[test]
    fn memo_amplification_is_bounded() {
        // Hand-written: memo 0 = 0; memo k+1 = a list of 256 references to memo k (each built,
        // memoised and popped); the result is memo 4, which would expand to 256^4 objects.
        let mut data = b"\x80\x02K\x00q\x000".to_vec();
        for level in 0..4u8 {
            data.extend(b"](");
            for _ in 0..256 {
                data.extend([b'h', level]);
            }
            data.extend([b'e', b'q', level + 1, b'0']);
        }
        data.extend(b"h\x04.");
        let e = err_of(&data);
        assert!(e.message.contains("more than 1000000 objects"), "{e}");
    }

    #[test]
    fn empty_lists_are_counted_while_parsing() {
        // `]` makes an empty list per byte: a 256 MiB pickle of them made ~15 GiB of arena
        // before the old reader found that STOP was missing.
        let mut data = b"\x80\x02".to_vec();
        data.extend(std::iter::repeat_n(EMPTY_LIST, MAX_OBJECTS + 10));
        data.push(STOP);
        let e = err_of(&data);
        assert!(e.message.contains("more than 1000000 objects"), "{e}");
        // It stops as soon as the budget is spent, not at the end: half the objects are lists,
        // half their stack slots.
        assert!(e.offset <= 2 + MAX_OBJECTS / 2 + 1, "{e}");
    }

    #[test]
    fn stack_and_memo_growth_is_counted_while_parsing() {
        // DUP pushes a reference without a new object; LONG_BINPUT fills the memo.
        let mut dups = b"\x80\x02]".to_vec();
        dups.extend(std::iter::repeat_n(DUP, MAX_OBJECTS + 10));
        dups.push(STOP);
        assert!(err_of(&dups).message.contains("objects"));
        let mut memo = b"\x80\x02N".to_vec();
        for k in 0..(MAX_OBJECTS as u32 + 10) {
            memo.push(LONG_BINPUT);
            memo.extend(k.to_le_bytes());
        }
        memo.push(STOP);
        let e = err_of(&memo);
        assert!(e.message.contains("objects"), "{e}");
        let mut marks = b"\x80\x02".to_vec();
        marks.extend(std::iter::repeat_n(MARK, MAX_OBJECTS + 10));
        assert!(err_of(&marks).message.contains("objects"));
    }

    #[test]
    fn strings_copied_by_stack_global_are_counted_while_parsing() {
        // A 64 KiB string memoised once, then STACK_GLOBAL on two references to it, again and
        // again: each copies 128 KiB into a new global, so a 1 MB pickle could make gigabytes.
        let mut data = b"\x80\x04".to_vec();
        data.push(BINUNICODE);
        data.extend((64u32 << 10).to_le_bytes());
        data.extend(std::iter::repeat_n(b'x', 64 << 10));
        data.extend([BINPUT, 0, POP]);
        for _ in 0..1000 {
            data.extend([BINGET, 0, BINGET, 0, STACK_GLOBAL, POP]);
        }
        data.extend([NONE, STOP]);
        let e = err_of(&data);
        assert!(e.message.contains("bytes of strings"), "{e}");
    }

    #[test]
    fn unknown_opcode_names_byte_and_offset() {
        let e = err_of(b"\x80\x02K\x01\xff.");
        assert_eq!(e.offset, 4);
        assert!(e.message.contains("0xff"), "{e}");
        // Protocol-0 text opcode 'I' (INT) is not supported either.
        let e = err_of(b"\x80\x02I1\n.");
        assert!(e.message.contains("0x49 ('I')"), "{e}");
    }

    #[test]
    fn truncation_and_absurd_lengths_are_errors() {
        let full = b"\x80\x02X\x05\x00\x00\x00hello.";
        for cut in 0..full.len() {
            let e = err_of(&full[..cut]);
            assert!(
                e.message.contains("truncated") || e.message.contains("remain"),
                "cut at {cut}: {e}"
            );
        }
        // BINUNICODE8 claiming 2^60 bytes.
        let e = err_of(b"\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x10abc.");
        assert!(e.message.contains("1152921504606846976 bytes"), "{e}");
        // FRAME longer than the data.
        let e = err_of(b"\x80\x04\x95\xff\xff\xff\xff\x00\x00\x00\x00N.");
        assert!(e.message.contains("FRAME"), "{e}");
        // Negative BINSTRING length.
        let e = err_of(b"\x80\x02T\xff\xff\xff\xff.");
        assert!(e.message.contains("negative"), "{e}");
    }

    #[test]
    fn structural_errors() {
        assert!(err_of(b"\x80\x02t.").message.contains("MARK"));
        assert!(err_of(b"\x80\x02\x85.").message.contains("underflow"));
        assert!(err_of(b"\x80\x02h\x03.").message.contains("memo entry 3"));
        assert!(err_of(b"\x80\x02NN.").message.contains("2 objects"));
        assert!(err_of(b"\x80\x02(N.").message.contains("MARK"));
        assert!(err_of(b"\x80\x02]K\x01K\x02s.")
            .message
            .contains("SETITEM on a list"));
        assert!(err_of(b"\x80\x02}K\x01a.")
            .message
            .contains("APPEND on a dict"));
        assert!(err_of(b"\x80\x09N.").message.contains("protocol 9"));
        assert!(err_of(b"\x80\x02N.N").message.contains("after STOP"));
        assert!(err_of(b"\x80\x02X\x02\x00\x00\x00\xff\xfe.")
            .message
            .contains("UTF-8"));
        // A mark hides what is below it.
        assert!(err_of(b"\x80\x02N(\x85t.").message.contains("underflow"));
        let long_line = [b"\x80\x02c".as_slice(), &[b'a'; 5000], b"\nb\n."].concat();
        assert!(err_of(&long_line).message.contains("end of line"));
    }

    #[test]
    fn parse_at_reads_consecutive_pickles() {
        let data = b"\x80\x02K\x07.\x80\x02M\xe9\x03.";
        let (a, end) = parse_at(data, 0).unwrap();
        assert_eq!((a, end), (Value::Int(7), 5));
        let (b, end) = parse_at(data, end).unwrap();
        assert_eq!((b, end), (Value::Int(1001), data.len()));
    }
}
