//! Serde visitors that bound what a decoder allocates while it decodes: a sequence or map is
//! refused by its announced length before anything is reserved and by count while it is
//! read, a string by its length before it is copied. A message can then never decode into
//! much more memory than its frame, whatever counts it announces (a frame of 64 MiB holding
//! 67 million empty strings would otherwise become about 1.6 GB of `String`s).

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Error, MapAccess, SeqAccess, Visitor};

/// Most elements reserved ahead of the ones actually decoded.
const RESERVE_AHEAD: usize = 1024;

/// A sequence visitor that refuses more than `max` elements.
pub(crate) struct BoundedSeq<T> {
    max: usize,
    expecting: &'static str,
    _element: PhantomData<T>,
}

impl<T> BoundedSeq<T> {
    /// At most `max` elements; `expecting` says so in the error.
    pub(crate) fn new(max: usize, expecting: &'static str) -> Self {
        BoundedSeq {
            max,
            expecting,
            _element: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedSeq<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let hint = seq.size_hint().unwrap_or(0);
        if hint > self.max {
            return Err(Error::invalid_length(hint, &self));
        }
        let mut out = Vec::with_capacity(hint.min(RESERVE_AHEAD));
        while let Some(item) = seq.next_element::<T>()? {
            if out.len() == self.max {
                return Err(Error::invalid_length(out.len() + 1, &self));
            }
            out.push(item);
        }
        Ok(out)
    }
}

/// A map visitor that refuses more than `max` entries (a `BTreeMap` reserves nothing ahead).
pub(crate) struct BoundedMap<K, V> {
    max: usize,
    expecting: &'static str,
    _entry: PhantomData<(K, V)>,
}

impl<K, V> BoundedMap<K, V> {
    /// At most `max` entries; `expecting` says so in the error.
    pub(crate) fn new(max: usize, expecting: &'static str) -> Self {
        BoundedMap {
            max,
            expecting,
            _entry: PhantomData,
        }
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Visitor<'de> for BoundedMap<K, V> {
    type Value = BTreeMap<K, V>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BTreeMap<K, V>, A::Error> {
        let hint = map.size_hint().unwrap_or(0);
        if hint > self.max {
            return Err(Error::invalid_length(hint, &self));
        }
        let mut out = BTreeMap::new();
        let mut read = 0usize;
        while let Some((key, value)) = map.next_entry::<K, V>()? {
            read += 1;
            if read > self.max {
                return Err(Error::invalid_length(read, &self));
            }
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// A string no longer than [`MAX_ID_BYTES`](crate::limits::MAX_ID_BYTES), checked before it
/// is copied.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Id(pub(crate) String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Id, D::Error> {
        deserializer.deserialize_str(IdVisitor).map(Id)
    }
}

struct IdVisitor;

/// The message below names this number.
const _: () = assert!(crate::limits::MAX_ID_BYTES == 1024);

impl Visitor<'_> for IdVisitor {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an id of at most 1024 bytes")
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<String, E> {
        if v.len() > crate::limits::MAX_ID_BYTES {
            return Err(E::invalid_length(v.len(), &self));
        }
        Ok(v.to_owned())
    }
}

/// Deserialises an id, refusing one longer than
/// [`MAX_ID_BYTES`](crate::limits::MAX_ID_BYTES) before copying it.
pub(crate) fn id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Id::deserialize(deserializer).map(|id| id.0)
}

/// Deserialises a request's node ids, at most
/// [`MAX_REQUEST_NODES`](crate::limits::MAX_REQUEST_NODES), each a bounded id.
pub(crate) fn node_ids<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    let ids = deserializer.deserialize_seq(BoundedSeq::<Id>::new(
        crate::limits::MAX_REQUEST_NODES,
        "a sequence of at most 65536 node ids",
    ))?;
    Ok(ids.into_iter().map(|id| id.0).collect())
}

/// Deserialises boundary tensors keyed by node id, at most
/// [`HARD_MAX_TENSORS`](crate::limits::HARD_MAX_TENSORS), each key a bounded id.
pub(crate) fn boundary<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, crate::tensor::WireTensor>, D::Error> {
    let map = deserializer.deserialize_map(BoundedMap::<Id, crate::tensor::WireTensor>::new(
        crate::limits::HARD_MAX_TENSORS,
        "a map of at most 4096 boundary tensors",
    ))?;
    Ok(map.into_iter().map(|(id, t)| (id.0, t)).collect())
}

/// Deserialises a list of model offers, at most
/// [`MAX_REQUEST_NODES`](crate::limits::MAX_REQUEST_NODES).
pub(crate) fn offers<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<crate::message::ModelOffer>, D::Error> {
    deserializer.deserialize_seq(BoundedSeq::new(
        crate::limits::MAX_REQUEST_NODES,
        "a sequence of at most 65536 model offers",
    ))
}

/// Deserialises a cost table's nodes, at most
/// [`MAX_COST_NODES`](crate::message::MAX_COST_NODES), each id bounded.
pub(crate) fn cost_nodes<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<crate::message::NodeCost>, D::Error> {
    deserializer.deserialize_seq(BoundedSeq::new(
        crate::message::MAX_COST_NODES,
        "a sequence of at most 100000 node costs",
    ))
}

/// Deserialises a cost table's codec speeds, at most
/// [`MAX_CODEC_SPEEDS`](crate::message::MAX_CODEC_SPEEDS).
pub(crate) fn codec_speeds<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<crate::message::CodecSpeed>, D::Error> {
    deserializer.deserialize_seq(BoundedSeq::new(
        crate::message::MAX_CODEC_SPEEDS,
        "a sequence of at most 6 codec speeds",
    ))
}

const _: () = assert!(
    crate::limits::MAX_REQUEST_NODES == 65536
        && crate::limits::HARD_MAX_TENSORS == 4096
        && crate::message::MAX_COST_NODES == 100_000
        && crate::message::MAX_CODEC_SPEEDS == 6
);
