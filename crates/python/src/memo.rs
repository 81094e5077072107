//! Decoded Python values kept beside L1 entries (the core's `Memo`).
//!
//! An L1 hit otherwise copies the payload into `bytes` and unpickles it on
//! every call. A value that callers cannot tell apart from a fresh decode
//! is kept instead:
//!
//! - immutable values (`None`, `bool`, `int`, `float`, `str`, `bytes`,
//!   and tuples / frozensets of them) are handed out as they are;
//! - trees of plain `dict`s, `list`s and `set`s over such leaves are handed
//!   out as a fresh structural copy (new containers, shared immutable
//!   leaves), as cheap as a dict copy for the usual flat dict.
//!
//! Everything else (instances, subclasses, a container reachable twice,
//! whose aliasing a copy would break) is decoded on every hit as before.
//! A memo belongs to one serializer kind: a handle with another serializer
//! sharing the L1 decodes for itself.
//!
//! A handle made with `copy=False` asks for [`SHARED`] memos: every hit
//! hands out the one decoded object itself, whatever its type (the caller
//! promised not to mutate it). Its memos are a kind of their own, so a
//! copying handle on the same L1 never receives a shared object.

use std::collections::HashSet;

use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple,
};

/// Set in a memo key by a handle whose hits share one object (`copy=False`).
pub(crate) const SHARED: u8 = 0x80;
/// Values larger than this (payload bytes) are not memoized.
pub(crate) const MAX_PAYLOAD: usize = 64 << 10;
/// Objects walked at most per value; bigger trees are not memoized.
const MAX_NODES: usize = 256;
/// Charged per memo on top of the objects' own sizes.
pub(crate) const SLOT_OVERHEAD: u64 = 64;
/// Charged per container of a kept tree for its [`Plan`] node.
const PLAN_NODE: u64 = 48;

/// What objects of `bytes` (their `__sizeof__`) hold of the process: a
/// quarter more. Python's allocators keep objects of many sizes apart
/// (pymalloc's pools, and glibc's heap for those over 512 B, which mixed
/// sizes fragment); charged at their own sizes, kept values let the L1
/// memory soak with mixed sizes through Django grow 1.17x the bound,
/// against 1.13x with memos off (docs/benchmarks.md).
fn held(bytes: u64) -> u64 {
    bytes + bytes / 4
}

pub(crate) struct PyMemo {
    /// The serializer's memo key (non-zero).
    pub(crate) kind: u8,
    /// `None`: the value is not one kept; decode it on every hit (and do
    /// not look at it again).
    obj: Option<Py<PyAny>>,
    /// `None`: `obj` is immutable and handed out itself; otherwise where
    /// its containers are, so a hit copies exactly those.
    plan: Option<Plan>,
}

/// The containers of a kept tree, found once when it is kept: a hit copies
/// each container with one C-level copy and replaces only the values that
/// are containers themselves, instead of looking at every leaf again.
enum Plan {
    /// A dict: copied, then these keys' values (containers) replaced by
    /// copies of them.
    Dict(Vec<(Py<PyAny>, Py<PyAny>, Plan)>),
    /// A list: sliced, then these positions' items replaced by copies.
    List(Vec<(usize, Py<PyAny>, Plan)>),
    /// A set (of immutable items): copied.
    Set,
}

impl Plan {
    /// The plan of `o`, a container of a tree [`Walk`] accepted, and the
    /// number of containers in it.
    fn of(o: &Bound<'_, PyAny>, nodes: &mut u64) -> PyResult<Plan> {
        *nodes += 1;
        if let Ok(d) = o.cast_exact::<PyDict>() {
            let mut inner = Vec::new();
            for (k, v) in d.iter() {
                if is_container(&v) {
                    let plan = Plan::of(&v, nodes)?;
                    inner.push((k.unbind(), v.unbind(), plan));
                }
            }
            return Ok(Plan::Dict(inner));
        }
        if let Ok(l) = o.cast_exact::<PyList>() {
            let mut inner = Vec::new();
            for (i, v) in l.iter().enumerate() {
                if is_container(&v) {
                    let plan = Plan::of(&v, nodes)?;
                    inner.push((i, v.unbind(), plan));
                }
            }
            return Ok(Plan::List(inner));
        }
        Ok(Plan::Set)
    }

    /// A fresh copy of `o` (the kept container this plan was made of).
    fn copy<'py>(&self, o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = o.py();
        match self {
            Plan::Dict(inner) => {
                let out = o.cast::<PyDict>()?.copy()?;
                for (k, v, plan) in inner {
                    out.set_item(k.bind(py), plan.copy(v.bind(py))?)?;
                }
                Ok(out.into_any())
            }
            Plan::List(inner) => {
                let l = o.cast::<PyList>()?;
                let out = l.get_slice(0, l.len());
                for (i, v, plan) in inner {
                    out.set_item(*i, plan.copy(v.bind(py))?)?;
                }
                Ok(out.into_any())
            }
            Plan::Set => Ok(PySet::new(py, o.cast::<PySet>()?.iter())?.into_any()),
        }
    }
}

impl PyMemo {
    /// A memo of `obj` (just decoded, not yet seen by anyone else) and its
    /// charge in bytes.
    pub(crate) fn of(kind: u8, obj: &Bound<'_, PyAny>) -> PyResult<(PyMemo, u64)> {
        let mut walk = Walk::default();
        let Some(shape) = walk.shape(obj)? else {
            return Ok((PyMemo::decode_per_hit(kind), SLOT_OVERHEAD));
        };
        if shape == Shape::Immutable {
            let memo = PyMemo {
                kind,
                obj: Some(obj.clone().unbind()),
                plan: None,
            };
            return Ok((memo, held(walk.bytes) + SLOT_OVERHEAD));
        }
        // The caller gets `obj`; the memo keeps a copy nobody else holds.
        let kept = copy_tree(obj)?;
        let mut nodes = 0;
        let plan = Plan::of(&kept, &mut nodes)?;
        let memo = PyMemo {
            kind,
            obj: Some(kept.unbind()),
            plan: Some(plan),
        };
        Ok((memo, held(walk.bytes) + SLOT_OVERHEAD + nodes * PLAN_NODE))
    }

    /// A shared memo of `obj`, handed out as it is on every hit, and its
    /// charge: the objects' own sizes for a tree [`Walk`] can measure;
    /// anything else (instances, trees over its node limit) four times its
    /// payload's size, about what unpickled instances and lists of small
    /// objects take.
    pub(crate) fn shared(
        kind: u8,
        obj: &Bound<'_, PyAny>,
        payload: usize,
    ) -> PyResult<(PyMemo, u64)> {
        let mut walk = Walk::default();
        let bytes = match walk.shape(obj)? {
            Some(_) => held(walk.bytes),
            None => 4 * payload as u64,
        };
        let memo = PyMemo {
            kind,
            obj: Some(obj.clone().unbind()),
            plan: None,
        };
        Ok((memo, bytes + SLOT_OVERHEAD))
    }

    /// The note that an entry's value is decoded on every hit.
    pub(crate) fn decode_per_hit(kind: u8) -> PyMemo {
        PyMemo {
            kind,
            obj: None,
            plan: None,
        }
    }

    /// What a hit hands out: the value or a fresh copy of it; `None` when
    /// it must be decoded.
    pub(crate) fn hand_out(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let Some(obj) = &self.obj else {
            return Ok(None);
        };
        Ok(Some(match &self.plan {
            Some(plan) => plan.copy(obj.bind(py))?.unbind(),
            None => obj.clone_ref(py),
        }))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Immutable,
    Container,
}

#[derive(Default)]
struct Walk {
    nodes: usize,
    bytes: u64,
    containers: HashSet<usize>,
}

impl Walk {
    fn shape(&mut self, o: &Bound<'_, PyAny>) -> PyResult<Option<Shape>> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Ok(None);
        }
        if o.is_none()
            || o.is_exact_instance_of::<PyBool>()
            || o.is_exact_instance_of::<PyInt>()
            || o.is_exact_instance_of::<PyFloat>()
            || o.is_exact_instance_of::<PyString>()
            || o.is_exact_instance_of::<PyBytes>()
        {
            self.size(o)?;
            return Ok(Some(Shape::Immutable));
        }
        if let Ok(t) = o.cast_exact::<PyTuple>() {
            self.size(o)?;
            return self.all_immutable(t.iter());
        }
        if let Ok(s) = o.cast_exact::<PyFrozenSet>() {
            self.size(o)?;
            return self.all_immutable(s.iter());
        }
        let mutable = o.is_exact_instance_of::<PyDict>()
            || o.is_exact_instance_of::<PyList>()
            || o.is_exact_instance_of::<PySet>();
        // A container reachable twice: a copy would split it in two.
        if !mutable || !self.containers.insert(o.as_ptr() as usize) {
            return Ok(None);
        }
        self.size(o)?;
        if let Ok(d) = o.cast_exact::<PyDict>() {
            for (k, v) in d.iter() {
                if self.shape(&k)? != Some(Shape::Immutable) || self.shape(&v)?.is_none() {
                    return Ok(None);
                }
            }
        } else if let Ok(l) = o.cast_exact::<PyList>() {
            for v in l.iter() {
                if self.shape(&v)?.is_none() {
                    return Ok(None);
                }
            }
        } else if let Ok(s) = o.cast_exact::<PySet>()
            && self.all_immutable(s.iter())?.is_none()
        {
            return Ok(None);
        }
        Ok(Some(Shape::Container))
    }

    /// Only ever called on objects of the exact built-in types above.
    fn size(&mut self, o: &Bound<'_, PyAny>) -> PyResult<()> {
        self.bytes += o.call_method0("__sizeof__")?.extract::<u64>()?;
        Ok(())
    }

    fn all_immutable<'py>(
        &mut self,
        items: impl Iterator<Item = Bound<'py, PyAny>>,
    ) -> PyResult<Option<Shape>> {
        for v in items {
            if self.shape(&v)? != Some(Shape::Immutable) {
                return Ok(None);
            }
        }
        Ok(Some(Shape::Immutable))
    }
}

/// New containers all the way down, immutable leaves shared. Only called
/// on trees [`Walk`] accepted.
fn copy_tree<'py>(o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = o.py();
    if let Ok(d) = o.cast_exact::<PyDict>() {
        let out = d.copy()?;
        for (k, v) in d.iter() {
            if is_container(&v) {
                out.set_item(k, copy_tree(&v)?)?;
            }
        }
        return Ok(out.into_any());
    }
    if let Ok(l) = o.cast_exact::<PyList>() {
        let out = l.get_slice(0, l.len());
        for (i, v) in l.iter().enumerate() {
            if is_container(&v) {
                out.set_item(i, copy_tree(&v)?)?;
            }
        }
        return Ok(out.into_any());
    }
    if let Ok(s) = o.cast_exact::<PySet>() {
        return Ok(PySet::new(py, s.iter())?.into_any());
    }
    Ok(o.clone())
}

fn is_container(o: &Bound<'_, PyAny>) -> bool {
    o.is_exact_instance_of::<PyDict>()
        || o.is_exact_instance_of::<PyList>()
        || o.is_exact_instance_of::<PySet>()
}

/// `e` decoded by `loads`, from its memo when it has one of this kind.
pub(crate) fn decoded(
    cache: &stratacache::Cache,
    py: Python<'_>,
    e: &stratacache::Entry,
    loads: &Bound<'_, PyAny>,
    memo: u8,
) -> PyResult<Py<PyAny>> {
    if memo != 0
        && let Some(m) = e.memo.get::<PyMemo>()
        && m.kind == memo
        && let Some(v) = m.hand_out(py)?
    {
        return Ok(v);
    }
    let obj = loads.call1((e.meta.format.0, PyBytes::new(py, &e.payload)))?;
    // A value's objects take at least about its payload's size: with
    // less room left, do not walk and copy it only to be refused.
    if memo != 0
        && e.payload.len() <= MAX_PAYLOAD
        && !e.memo.is_set()
        && cache.memo_room() >= e.payload.len() as u64 + SLOT_OVERHEAD
    {
        let (m, charge) = if memo & SHARED != 0 {
            PyMemo::shared(memo, &obj, e.payload.len())?
        } else {
            PyMemo::of(memo, &obj)?
        };
        // Refused (the budget is short): note that this entry decodes
        // per hit, so later hits do not walk and copy it again.
        if !cache.memoize(e, m, charge) {
            cache.memoize(e, PyMemo::decode_per_hit(memo), SLOT_OVERHEAD);
        }
    }
    Ok(obj.unbind())
}
