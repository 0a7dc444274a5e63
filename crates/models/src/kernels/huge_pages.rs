//! Huge pages under large weights. A layer whose weight is larger than the caches reads it
//! from memory on every pass, a 4 KiB page after another: each new page costs a walk of the
//! page tables, and the CPU's prefetchers stop at its edge. Where Linux offers transparent huge
//! pages on request (`/sys/kernel/mm/transparent_hugepage/enabled` set to `madvise` or
//! `always`), a weight's buffer is marked for 2 MiB pages before it is first written, so that
//! its pages are huge from the start.

/// Bytes of a huge page: buffers smaller than two of them are left as they are.
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back `buf`'s allocation (its capacity, not yet written) with huge pages,
/// where it is at least two huge pages long. Only a request: a kernel that refuses it, or
/// another system, leaves the buffer on ordinary pages.
pub(crate) fn ask_for(buf: &Vec<f32>) {
    let bytes = buf.capacity() * size_of::<f32>();
    if bytes < 2 * HUGE_PAGE {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // The whole huge pages inside the allocation: madvise takes a page-aligned start.
        let start = buf.as_ptr() as usize;
        let first = start.next_multiple_of(HUGE_PAGE);
        let end = (start + bytes) / HUGE_PAGE * HUGE_PAGE;
        if end > first {
            // SAFETY: the range lies inside `buf`'s allocation, which it owns and does not
            // share, and MADV_HUGEPAGE changes only how the kernel backs those pages, never
            // their contents or their mapping's permissions.
            #[allow(unsafe_code)]
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::aligned::Aligned;

    /// Whether Linux backs a region marked with `madvise` by huge pages.
    fn offered() -> bool {
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|mode| mode.contains("[madvise]") || mode.contains("[always]"))
    }

    /// The bytes of huge pages under the mapping that holds `address`, from /proc/self/smaps.
    fn huge_bytes_at(address: usize) -> Option<usize> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((start, end)) = range.split_once('-')
                && let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                )
            {
                inside = (start..end).contains(&address);
            } else if inside && let Some(kb) = line.strip_prefix("AnonHugePages:") {
                return kb
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .map(|k| k << 10);
            }
        }
        None
    }

    #[test]
    fn a_large_weight_lies_on_huge_pages_where_linux_offers_them() {
        let values = vec![1.5f32; 6 << 20];
        let weight = Aligned::copy_of(&values);
        assert_eq!(&weight[..], &values[..], "the copy holds the values");
        let small = Aligned::copy_of(&values[..1000]);
        assert_eq!(&small[..], &values[..1000]);
        if !cfg!(target_os = "linux") || !offered() {
            eprintln!("no transparent huge pages on request here: the request is not checked");
            return;
        }
        // The marked part of the buffer is a mapping of its own: look in its middle.
        let middle = weight[weight.len() / 2..].as_ptr() as usize;
        let huge = huge_bytes_at(middle).expect("the weight's mapping");
        // 24 MiB hold at least 10 whole 2 MiB pages; one is enough to show the request took.
        assert!(huge >= super::HUGE_PAGE, "{huge} bytes on huge pages");
    }
}
