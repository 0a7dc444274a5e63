//! Decoding bounds: every length, rank and element count is checked against these before use.

/// The largest rank any decoder accepts, whatever [`Limits::max_rank`] says. Shapes longer than
/// this are refused while decoding, before the shape vector grows.
pub const HARD_MAX_RANK: usize = 8;

/// The most boundary tensors any decoder accepts in one request, whatever
/// [`Limits::max_tensors`] says; more are refused while decoding, before the map grows.
pub const HARD_MAX_TENSORS: usize = 4096;

/// The most node ids one request may name (no network this protocol carries has more nodes);
/// more are refused while decoding, before the list grows.
pub const MAX_REQUEST_NODES: usize = 65536;

/// The longest id (model id, weights hash, node id) a decoder accepts, in bytes; a longer one
/// is refused before it is copied.
pub const MAX_ID_BYTES: usize = 1024;

/// Bounds applied to every frame and tensor that is read from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame body in bytes (the u32 length prefix is checked against it before any
    /// body byte is read). Default 64 MiB.
    pub max_frame_bytes: u32,
    /// Largest tensor rank; values above [`HARD_MAX_RANK`] act as [`HARD_MAX_RANK`]. Default 8.
    pub max_rank: usize,
    /// Largest element count of one tensor. Default 16 Mi elements (64 MiB of f32).
    pub max_elements: u64,
    /// Largest number of boundary tensors in one request; values above [`HARD_MAX_TENSORS`]
    /// act as [`HARD_MAX_TENSORS`]. Default 1024.
    pub max_tensors: usize,
}

/// The default frame size limit: 64 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 64 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_rank: HARD_MAX_RANK,
            max_elements: 16 * 1024 * 1024,
            max_tensors: 1024,
        }
    }
}
