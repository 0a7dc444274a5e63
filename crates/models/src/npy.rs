//! NumPy `.npy` files holding little-endian float32 tensors in C order, in and out.

use std::path::Path;

use crate::error::ModelError;
use crate::tensor::HostTensor;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Largest header accepted (NumPy itself writes a few hundred bytes).
const MAX_HEADER: usize = 1 << 16;

fn npy_err(message: impl Into<String>) -> ModelError {
    ModelError::Format {
        what: ".npy".into(),
        message: message.into(),
    }
}

/// Parses `.npy` bytes (format version 1, 2 or 3) holding `<f4` data in C order.
pub fn read_npy(bytes: &[u8]) -> Result<HostTensor, ModelError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(npy_err(
            "not a .npy file (the magic string \\x93NUMPY is missing)",
        ));
    }
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(npy_err(format!("unsupported format version {v}"))),
    };
    if header_len > MAX_HEADER || bytes.len() < start + header_len {
        return Err(npy_err("the header is truncated or too long"));
    }
    let header = std::str::from_utf8(&bytes[start..start + header_len])
        .map_err(|_| npy_err("the header is not text"))?;
    let descr = dict_value(header, "descr")?;
    if !matches!(descr.trim_matches(|c| c == '\'' || c == '"'), "<f4" | "=f4") {
        return Err(npy_err(format!(
            "dtype {descr} is not little-endian float32; save with `np.save(path, x.astype(np.float32))`"
        )));
    }
    if dict_value(header, "fortran_order")?.trim() != "False" {
        return Err(npy_err(
            "Fortran order is not supported; save with `np.ascontiguousarray(x)`",
        ));
    }
    let shape_text = dict_value(header, "shape")?;
    let shape = shape_text
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| npy_err(format!("bad shape {shape_text}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let data = &bytes[start + header_len..];
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|n| n.checked_mul(4) == Some(data.len()))
        .ok_or_else(|| {
            npy_err(format!(
                "shape {shape:?} does not match the {} data bytes",
                data.len()
            ))
        })?;
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect::<Vec<_>>();
    debug_assert_eq!(values.len(), count);
    HostTensor::new(shape, values)
}

/// The text of `key`'s value in the header's Python dict literal.
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str, ModelError> {
    let missing = || npy_err(format!("the header has no `{key}` entry"));
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))
        .ok_or_else(missing)?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')
        .ok_or_else(missing)?
        .trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else {
        rest.find([',', '}'])
    };
    Ok(&rest[..end.ok_or_else(missing)?])
}

/// Serialises a tensor as `.npy` (version 1.0, `<f4`, C order).
pub fn write_npy(tensor: &HostTensor) -> Vec<u8> {
    let shape = match tensor.shape() {
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces so that the data starts on a 64-byte boundary, ending in a newline.
    let total = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * tensor.data().len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in tensor.data() {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Reads a `.npy` file.
pub fn load_npy(path: &Path) -> Result<HostTensor, ModelError> {
    let bytes = std::fs::read(path).map_err(|error| ModelError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    read_npy(&bytes).map_err(|e| match e {
        ModelError::Format { message, .. } => ModelError::Format {
            what: format!(".npy file {}", path.display()),
            message,
        },
        other => other,
    })
}

/// Writes a `.npy` file.
pub fn save_npy(path: &Path, tensor: &HostTensor) -> Result<(), ModelError> {
    std::fs::write(path, write_npy(tensor)).map_err(|error| ModelError::Io {
        path: path.to_path_buf(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_alignment() {
        for shape in [vec![5], vec![2, 3], vec![1, 3, 2, 2]] {
            let n: usize = shape.iter().product();
            let t = HostTensor::new(shape, (0..n).map(|i| i as f32 * 0.5 - 1.0).collect())
                .expect("tensor");
            let bytes = write_npy(&t);
            let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + header_len) % 64, 0);
            assert_eq!(read_npy(&bytes).expect("reads back"), t);
        }
    }

    #[test]
    fn reads_numpy_written_header() {
        // As written by numpy 1.x for np.arange(3, dtype=np.float32).reshape(1, 3).
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        let padded = format!("{header:<117}\n");
        bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        bytes.extend_from_slice(padded.as_bytes());
        for x in [0.0f32, 1.0, 2.0] {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let t = read_npy(&bytes).expect("numpy file");
        assert_eq!(t.shape(), &[1, 3]);
        assert_eq!(t.data(), &[0.0, 1.0, 2.0]);
    }

    #[test]
    fn rejects_bad_files_with_advice() {
        assert!(read_npy(b"not numpy").is_err());
        let t = HostTensor::new(vec![2], vec![1.0, 2.0]).expect("tensor");
        let good = write_npy(&t);
        let replace = |from: &[u8], to: &[u8]| {
            let mut bytes = good.clone();
            let at = bytes
                .windows(from.len())
                .position(|w| w == from)
                .expect("present");
            bytes[at..at + to.len()].copy_from_slice(to);
            bytes
        };
        let msg = read_npy(&replace(b"<f4", b"<f8"))
            .expect_err("f64")
            .to_string();
        assert!(msg.contains("float32"), "{msg}");
        let msg = read_npy(&replace(b"False", b"True "))
            .expect_err("fortran")
            .to_string();
        assert!(msg.contains("Fortran"), "{msg}");
        let msg = read_npy(&good[..good.len() - 1])
            .expect_err("short")
            .to_string();
        assert!(msg.contains("data bytes"), "{msg}");
    }
}
