//! zstd for the record texts spooled during an outage (see `DeliveryLog`):
//! a small safe layer over the C API of the zstd that librdkafka is linked with.

use std::ffi::c_void;
use std::ptr::NonNull;
use zstd_sys as z;

/// zstd level 1: about 3x smaller for job records (per record, no shared
/// dictionary), at a few hundred MB/s on one core.
const LEVEL: i32 = 1;

/// A compression and a decompression context, reused from call to call (a
/// context is a few hundred KiB: allocating one per record would cost more
/// than the compression).
pub struct Zstd {
    cctx: NonNull<z::ZSTD_CCtx>,
    dctx: NonNull<z::ZSTD_DCtx>,
}

// SAFETY: the contexts are plain heap state owned by this value; zstd allows a
// context to be used from any thread, one call at a time (`&mut self`).
unsafe impl Send for Zstd {}

impl Zstd {
    /// `None` when zstd cannot allocate its contexts.
    pub fn new() -> Option<Zstd> {
        // SAFETY: constructors without preconditions; NULL means out of memory.
        let (cctx, dctx) = unsafe { (z::ZSTD_createCCtx(), z::ZSTD_createDCtx()) };
        match (NonNull::new(cctx), NonNull::new(dctx)) {
            (Some(cctx), Some(dctx)) => Some(Zstd { cctx, dctx }),
            (cctx, dctx) => {
                // SAFETY: freeing what was just created (NULL is accepted by zstd).
                unsafe {
                    z::ZSTD_freeCCtx(cctx.map_or(std::ptr::null_mut(), NonNull::as_ptr));
                    z::ZSTD_freeDCtx(dctx.map_or(std::ptr::null_mut(), NonNull::as_ptr));
                }
                None
            }
        }
    }

    /// Appends a zstd frame of `input` to `out` and returns true; false, with
    /// `out` as it was, when compression fails or would not make it smaller.
    pub fn compress_into(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        // SAFETY: no preconditions.
        let bound = unsafe { z::ZSTD_compressBound(input.len()) };
        out.reserve(bound);
        // SAFETY: the destination is the reserved, unused capacity of `out`
        // (`bound` bytes); zstd writes at most that much and returns how much.
        let written = unsafe {
            z::ZSTD_compressCCtx(
                self.cctx.as_ptr(),
                out.as_mut_ptr().add(start) as *mut c_void,
                bound,
                input.as_ptr() as *const c_void,
                input.len(),
                LEVEL,
            )
        };
        // SAFETY: no preconditions.
        if unsafe { z::ZSTD_isError(written) } != 0 || written >= input.len() {
            return false;
        }
        // SAFETY: zstd initialised `written` bytes past `start`.
        unsafe { out.set_len(start + written) };
        true
    }

    /// The text a frame holds, which must be exactly `len` bytes; `None` when
    /// the frame is damaged or of another length.
    pub fn decompress(&mut self, frame: &[u8], len: usize) -> Option<Vec<u8>> {
        let mut text = Vec::with_capacity(len);
        // SAFETY: the destination is `text`'s capacity (`len` bytes); zstd
        // writes at most that and reports an error rather than overrun it.
        let written = unsafe {
            z::ZSTD_decompressDCtx(
                self.dctx.as_ptr(),
                text.as_mut_ptr() as *mut c_void,
                len,
                frame.as_ptr() as *const c_void,
                frame.len(),
            )
        };
        // SAFETY: no preconditions.
        if unsafe { z::ZSTD_isError(written) } != 0 || written != len {
            return None;
        }
        // SAFETY: zstd initialised `written` (== len) bytes.
        unsafe { text.set_len(written) };
        Some(text)
    }
}

impl Drop for Zstd {
    fn drop(&mut self) {
        // SAFETY: contexts created by `new` and used by nobody else.
        unsafe {
            z::ZSTD_freeCCtx(self.cctx.as_ptr());
            z::ZSTD_freeDCtx(self.dctx.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> Vec<u8> {
        format!(
            "{{\"jobid\":{i},\"username\":\"user{}\",\"partition\":\"batch\",\"nodes\":\"node[{:03}-{:03}]\",\
             \"script\":\"#!/bin/bash\\n#SBATCH --time=1:00\\nsrun ./a.out --in /data/{i}\\n\"}}",
            i % 7,
            i % 100,
            i % 100 + 3
        )
        .into_bytes()
    }

    #[test]
    fn records_come_back_byte_for_byte_and_smaller() {
        let mut zstd = Zstd::new().unwrap();
        for i in 0..200 {
            let text = record(i).repeat(1 + i % 5);
            let mut out = b"head".to_vec();
            assert!(zstd.compress_into(&text, &mut out), "record {i} compresses");
            assert!(out.len() - 4 < text.len());
            assert_eq!(&out[..4], b"head", "what was in the buffer stays");
            assert_eq!(zstd.decompress(&out[4..], text.len()).as_deref(), Some(&text[..]));
        }
    }

    #[test]
    fn what_would_not_shrink_is_left_alone() {
        let mut zstd = Zstd::new().unwrap();
        let mut out = b"x".to_vec();
        assert!(!zstd.compress_into(b"", &mut out));
        assert!(!zstd.compress_into(b"{}", &mut out));
        // Bytes without repetition (an LCG's high bytes) do not shrink.
        let mut state = 1u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (state >> 56) as u8
            })
            .collect();
        assert!(!zstd.compress_into(&noise, &mut out));
        assert_eq!(out, b"x");
    }

    #[test]
    fn a_damaged_frame_or_a_wrong_length_is_refused() {
        let mut zstd = Zstd::new().unwrap();
        let text = record(1).repeat(10);
        let mut frame = Vec::new();
        assert!(zstd.compress_into(&text, &mut frame));
        assert_eq!(zstd.decompress(&frame, text.len() - 1), None, "too short a length");
        assert_eq!(zstd.decompress(&frame, text.len() + 1), None, "too long a length");
        assert_eq!(zstd.decompress(&frame[..frame.len() - 1], text.len()), None, "cut short");
        for at in 0..frame.len() {
            let mut bad = frame.clone();
            bad[at] ^= 0x5a;
            // Either refused or, where the flip hits literal bytes zstd does not
            // check, other bytes of the same length: never a crash or an overrun.
            if let Some(back) = zstd.decompress(&bad, text.len()) {
                assert_eq!(back.len(), text.len());
            }
        }
        assert_eq!(zstd.decompress(&frame, text.len()).as_deref(), Some(&text[..]), "still usable after errors");
    }
}
