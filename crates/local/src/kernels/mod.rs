//! Quantised matrix products for the CPU.
//!
//! Weights keep GGUF's 32-wide blocks, stored as separate arrays of scales
//! and quants: `Q8_0` (one scale, 32 signed bytes) and `Q4_1` (scale, minimum,
//! 32 four-bit values), so the file's `Q4_1` weights are used at 0.625 bytes
//! a weight. `Q4_1` matrices are repacked at load eight rows at a time
//! (`q4x8`) for a register-blocked integer GEMM that serves single tokens
//! and prompt chunks alike. Activations are quantised to 8 bits per block
//! (with the block's sum, for `Q4_1`'s minimum), and every product runs on
//! integers: with AVX2 32 multiply-adds per instruction (`vpmaddubsw`; the
//! `Q4_1` GEMM uses AVX-512 VNNI's `vpdpbusd` where the CPU has it),
//! otherwise a portable loop. `Q8_0` matrices (the token embedding, which
//! is also the output projection) use row-by-row dot products, or for
//! prompt chunks the dense f32 GEMM of `dense`.
//!
//! This module is the crate's only `unsafe` code: the SIMD intrinsics and
//! the call into the `gemm` crate. Every pointer read is within slices
//! whose lengths the safe callers check, and the SIMD results are compared
//! with the portable ones in the tests.

#![allow(unsafe_code)]

use rayon::prelude::*;

mod dense;
mod q4x8;
mod q8;

pub use dense::{gemm_f32, Strided};
use q4x8::Q4x8;
use q8::Q8Rows;

/// Values per quantisation block.
pub const QK: usize = 32;

/// Weight rows handled by one task of a product.
const ROWS_PER_TASK: usize = 32;

/// Activation rows multiplied against a task's weight rows at a time.
const ACT_TILE: usize = 16;

#[derive(Debug, Clone)]
enum Quants {
    /// `w = d * q`.
    Q8 { d: Vec<f32>, q: Vec<i8> },
    /// `w = d * q + m`, `q` in 0..16, repacked by groups of eight rows.
    Q4_1(Q4x8),
}

/// A `rows × cols` weight matrix in 32-wide quantisation blocks.
#[derive(Debug, Clone)]
pub struct QMatrix {
    pub rows: usize,
    pub cols: usize,
    quants: Quants,
}

/// Activations, `rows × cols`, quantised to 8 bits per 32-wide block.
#[derive(Debug, Default, Clone)]
pub struct QActs {
    pub rows: usize,
    pub cols: usize,
    d: Vec<f32>,
    /// `d * Σq` of each block.
    s: Vec<f32>,
    q: Vec<i8>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(String);

fn f16(bytes: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(bytes).to_f32()
}

/// 8-bit quantisation of one block: scale and values in −127..=127
/// (rounded half to even, as the AVX2 version does).
fn quantize_block(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (o, v) in q.iter_mut().zip(x) {
        *o = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    d
}

impl QMatrix {
    fn check(rows: usize, cols: usize, len: usize, block_bytes: usize) -> Result<(), ShapeError> {
        if !cols.is_multiple_of(QK) {
            return Err(ShapeError(format!(
                "{cols} columns is not a multiple of {QK}"
            )));
        }
        let want = rows * cols / QK * block_bytes;
        if len != want {
            return Err(ShapeError(format!(
                "{len} bytes for a {rows}×{cols} matrix, expected {want}"
            )));
        }
        Ok(())
    }

    /// From GGUF `Q8_0` bytes (per block: f16 scale, 32 × i8).
    pub fn from_q8_0(bytes: &[u8], rows: usize, cols: usize) -> Result<Self, ShapeError> {
        Self::check(rows, cols, bytes.len(), 34)?;
        let blocks = bytes.len() / 34;
        let mut d = Vec::with_capacity(blocks);
        let mut q = Vec::with_capacity(blocks * QK);
        for b in bytes.chunks_exact(34) {
            d.push(f16([b[0], b[1]]));
            q.extend(b[2..].iter().map(|&v| v as i8));
        }
        Ok(Self {
            rows,
            cols,
            quants: Quants::Q8 { d, q },
        })
    }

    /// From GGUF `Q4_1` bytes (per block: f16 scale, f16 minimum, 16 bytes
    /// of nibbles).
    pub fn from_q4_1(bytes: &[u8], rows: usize, cols: usize) -> Result<Self, ShapeError> {
        Self::check(rows, cols, bytes.len(), 20)?;
        Ok(Self {
            rows,
            cols,
            quants: Quants::Q4_1(Q4x8::from_gguf(bytes, rows, cols)?),
        })
    }

    /// `Q8_0` quantisation of dense row-major values.
    pub fn from_f32(values: &[f32], rows: usize, cols: usize) -> Result<Self, ShapeError> {
        if !cols.is_multiple_of(QK) || values.len() != rows * cols {
            return Err(ShapeError(format!(
                "{} values for a {rows}×{cols} matrix (columns must be a multiple of {QK})",
                values.len()
            )));
        }
        let mut q = vec![0i8; values.len()];
        let d = values
            .chunks_exact(QK)
            .zip(q.chunks_exact_mut(QK))
            .map(|(x, q)| quantize_block(x, q))
            .collect();
        Ok(Self {
            rows,
            cols,
            quants: Quants::Q8 { d, q },
        })
    }

    /// Row `j`, dequantised into `out` (`cols` values).
    pub fn row(&self, j: usize, out: &mut [f32]) {
        let nb = self.cols / QK;
        match &self.quants {
            Quants::Q8 { d, q } => {
                for b in 0..nb {
                    let scale = d[j * nb + b];
                    let src = &q[(j * nb + b) * QK..][..QK];
                    for (o, v) in out[b * QK..][..QK].iter_mut().zip(src) {
                        *o = scale * f32::from(*v);
                    }
                }
            }
            Quants::Q4_1(p) => p.row(j, out),
        }
    }

    /// Every row dequantised, row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (j, row) in out.chunks_exact_mut(self.cols).enumerate() {
            self.row(j, row);
        }
        out
    }

    /// Matrices with the same column count, stacked by rows. Kept in their
    /// quantisation when they share it; re-quantised to `Q8_0` otherwise.
    pub fn stack(parts: Vec<QMatrix>) -> Result<Self, ShapeError> {
        let cols = parts.first().map_or(0, |p| p.cols);
        if parts.iter().any(|p| p.cols != cols) {
            return Err(ShapeError("stacked matrices differ in width".into()));
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        let all_q8 = parts.iter().all(|p| matches!(p.quants, Quants::Q8 { .. }));
        let q41: Vec<&Q4x8> = parts
            .iter()
            .filter_map(|p| match &p.quants {
                Quants::Q4_1(q) => Some(q),
                Quants::Q8 { .. } => None,
            })
            .collect();
        let quants = if all_q8 {
            let (mut dd, mut qq) = (Vec::new(), Vec::new());
            for p in parts {
                if let Quants::Q8 { d, q } = p.quants {
                    dd.extend(d);
                    qq.extend(q);
                }
            }
            Quants::Q8 { d: dd, q: qq }
        } else if q41.len() == parts.len() {
            Quants::Q4_1(Q4x8::stack(&q41)?)
        } else {
            let dense: Vec<f32> = parts.iter().flat_map(|p| p.to_f32()).collect();
            return Self::from_f32(&dense, rows, cols);
        };
        Ok(Self { rows, cols, quants })
    }

    /// Whether products with this matrix run on the integer GEMM at any
    /// token count (`Q4_1`); `Q8_0` matrices do better through
    /// [`QMatrix::matmul_dense`] for prompt chunks.
    pub fn packed(&self) -> bool {
        matches!(self.quants, Quants::Q4_1(_))
    }

    /// `out = x · selfᵀ`: `x.rows × self.rows`, row-major.
    pub fn matmul(&self, x: &QActs, out: &mut [f32]) {
        self.matmul_with(x, out, avx2());
    }

    fn matmul_with(&self, x: &QActs, out: &mut [f32], simd: bool) {
        let w = match &self.quants {
            Quants::Q4_1(p) => return p.matmul(x, out, q4x8::Isa::best(simd)),
            Quants::Q8 { d, q } => Q8Rows {
                d,
                q,
                cols: self.cols,
            },
        };
        let (m, n) = (x.rows, self.rows);
        debug_assert_eq!(x.cols, self.cols);
        debug_assert_eq!(out.len(), m * n);
        if m == 1 {
            out.par_chunks_mut(ROWS_PER_TASK)
                .enumerate()
                .for_each(|(c, o)| {
                    for (r, v) in o.iter_mut().enumerate() {
                        *v = w.dot(c * ROWS_PER_TASK + r, x, 0, simd);
                    }
                });
            return;
        }
        // Column-major scratch so that each task writes one contiguous run.
        // A task's weight rows and one tile of activation rows both stay in
        // the L1 cache while they are multiplied.
        let mut t = vec![0f32; n * m];
        t.par_chunks_mut(ROWS_PER_TASK * m)
            .enumerate()
            .for_each(|(c, o)| {
                for i0 in (0..m).step_by(ACT_TILE) {
                    let i1 = (i0 + ACT_TILE).min(m);
                    for (r, dst) in o.chunks_exact_mut(m).enumerate() {
                        let j = c * ROWS_PER_TASK + r;
                        let mut i = i0;
                        while i + 4 <= i1 {
                            let four = w.dot4(j, x, i, simd);
                            dst[i..i + 4].copy_from_slice(&four);
                            i += 4;
                        }
                        while i < i1 {
                            dst[i] = w.dot(j, x, i, simd);
                            i += 1;
                        }
                    }
                }
            });
        for (j, col) in t.chunks_exact(m).enumerate() {
            for (i, v) in col.iter().enumerate() {
                out[i * n + j] = *v;
            }
        }
    }

    /// `out = x · selfᵀ` for dense activations (`m × cols`): the weights
    /// are dequantised (in parallel) into `scratch` and multiplied by a
    /// cache-blocked f32 GEMM. Faster than the integer kernels once there
    /// are enough rows to pay for the dequantisation: prompt chunks.
    pub fn matmul_dense(&self, x: &[f32], m: usize, out: &mut [f32], scratch: &mut Vec<f32>) {
        let (n, k) = (self.rows, self.cols);
        scratch.resize(n * k, 0.0);
        scratch
            .par_chunks_mut(k * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(c, rows)| {
                for (r, row) in rows.chunks_exact_mut(k).enumerate() {
                    self.row(c * ROWS_PER_TASK + r, row);
                }
            });
        let a = Strided::rows(&x[..m * k], k);
        let b = Strided {
            data: scratch,
            row: 1,
            col: k,
        };
        gemm_f32(m, n, k, a, b, 1.0, &mut out[..m * n], true);
    }
}

impl QActs {
    /// Quantises `x` (`rows × cols`, row-major), reusing this buffer;
    /// rows in parallel when there are many.
    pub fn quantize(&mut self, x: &[f32], rows: usize, cols: usize) {
        debug_assert_eq!(x.len(), rows * cols);
        debug_assert_eq!(cols % QK, 0);
        self.rows = rows;
        self.cols = cols;
        let nb = cols / QK;
        self.d.resize(rows * nb, 0.0);
        self.s.resize(rows * nb, 0.0);
        self.q.resize(rows * cols, 0);
        if nb == 0 {
            return;
        }
        let simd = avx2();
        let rows_per_task = (QUANT_TASK / cols).max(1);
        let (d, s, q) = (&mut self.d, &mut self.s, &mut self.q);
        d.par_chunks_mut(rows_per_task * nb)
            .zip(s.par_chunks_mut(rows_per_task * nb))
            .zip(q.par_chunks_mut(rows_per_task * cols))
            .zip(x.par_chunks(rows_per_task * cols))
            .for_each(|(((d, s), q), x)| {
                let blocks = x.chunks_exact(QK).zip(q.chunks_exact_mut(QK));
                for ((d, s), (x, q)) in d.iter_mut().zip(s.iter_mut()).zip(blocks) {
                    (*d, *s) = quantize_block_fast(x, q, simd);
                }
            });
    }

    fn row(&self, i: usize) -> (&[f32], &[f32], &[i8]) {
        let nb = self.cols / QK;
        (
            &self.d[i * nb..][..nb],
            &self.s[i * nb..][..nb],
            &self.q[i * self.cols..][..self.cols],
        )
    }
}

/// Values quantised by one task of [`QActs::quantize`].
const QUANT_TASK: usize = 16 * 1024;

/// A block's scale and `scale * Σq`.
fn quantize_block_fast(x: &[f32], q: &mut [i8], simd: bool) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if simd && x.len() >= QK && q.len() >= QK {
        // SAFETY: AVX2 and FMA are present, both slices hold a block.
        let (d, sum) = unsafe { x86::quantize_block(x, q) };
        return (d, d * sum as f32);
    }
    let _ = simd;
    let d = quantize_block(x, q);
    (d, d * q.iter().map(|&v| i32::from(v)).sum::<i32>() as f32)
}

/// Whether the AVX2 kernels can run here.
pub fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// One block of 32 values to 8 bits, as the portable `quantize_block`
    /// does (same scale, same rounding); returns the scale and Σq.
    ///
    /// # Safety
    /// AVX2 and FMA must be present; `x` and `q` hold at least 32 values.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32) {
        let p = x.as_ptr();
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let sign = _mm256_set1_ps(-0.0);
        let abs = |v| _mm256_andnot_ps(sign, v);
        let m = _mm256_max_ps(
            _mm256_max_ps(abs(v[0]), abs(v[1])),
            _mm256_max_ps(abs(v[2]), abs(v[3])),
        );
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
        let d = _mm_cvtss_f32(m) / 127.0;
        let id = _mm256_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
        // Round half to even (the default mode), then clamp.
        let (lo, hi) = (_mm256_set1_epi32(-127), _mm256_set1_epi32(127));
        let i = v.map(|v| {
            let r = _mm256_cvtps_epi32(_mm256_mul_ps(v, id));
            _mm256_min_epi32(_mm256_max_epi32(r, lo), hi)
        });
        let total = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
        let t = _mm_add_epi32(
            _mm256_castsi256_si128(total),
            _mm256_extracti128_si256(total, 1),
        );
        let t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0b01_00_11_10));
        let t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0b10_11_00_01));
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(i[0], i[1]),
            _mm256_packs_epi32(i[2], i[3]),
        );
        let ordered =
            _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, ordered);
        (d, _mm_cvtsi128_si32(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    pub(super) fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// GGUF `Q4_1` bytes for dense values (the reference quantiser).
    pub(super) fn q4_1_bytes(x: &[f32]) -> Vec<u8> {
        let mut out = Vec::new();
        for block in x.chunks_exact(QK) {
            let min = block.iter().copied().fold(f32::INFINITY, f32::min);
            let max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let d = (max - min) / 15.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
            out.extend_from_slice(&half::f16::from_f32(min).to_le_bytes());
            let q = |v: f32| ((v - min) * id).round().clamp(0.0, 15.0) as u8;
            for k in 0..QK / 2 {
                out.push(q(block[k]) | (q(block[k + QK / 2]) << 4));
            }
        }
        out
    }

    fn dense(w: &QMatrix, x: &[f32], m: usize) -> Vec<f32> {
        let wf = w.to_f32();
        let mut out = vec![0f32; m * w.rows];
        for i in 0..m {
            for j in 0..w.rows {
                out[i * w.rows + j] = (0..w.cols)
                    .map(|k| x[i * w.cols + k] * wf[j * w.cols + k])
                    .sum();
            }
        }
        out
    }

    fn check(w: &QMatrix, m: usize) {
        let x = random(m * w.cols, 9);
        let mut acts = QActs::default();
        acts.quantize(&x, m, w.cols);
        let mut got = vec![0f32; m * w.rows];
        w.matmul(&acts, &mut got);
        let want = dense(w, &x, m);
        for (g, r) in got.iter().zip(&want) {
            // 8-bit activations: a small relative error on sums of ~cols terms.
            assert!((g - r).abs() < 0.05 + 0.02 * r.abs(), "{g} vs {r}");
        }
        // The SIMD and portable paths agree to rounding.
        let mut portable = vec![0f32; m * w.rows];
        w.matmul_with(&acts, &mut portable, false);
        for (a, b) in got.iter().zip(&portable) {
            assert!((a - b).abs() <= 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn q8_products_match_dense_arithmetic() {
        let (rows, cols) = (70, 96);
        let w = QMatrix::from_f32(&random(rows * cols, 1), rows, cols).unwrap();
        for m in [1, 3, 4, 9] {
            check(&w, m);
        }
    }

    #[test]
    fn q4_1_products_match_dense_arithmetic() {
        let (rows, cols) = (67, 128);
        let bytes = q4_1_bytes(&random(rows * cols, 2));
        let w = QMatrix::from_q4_1(&bytes, rows, cols).unwrap();
        for m in [1, 2, 4, 7] {
            check(&w, m);
        }
    }

    #[test]
    fn simd_and_portable_quantisation_agree_exactly() {
        // Random values, ties at ±0.5 steps (127 and 63.5 share a block)
        // and an all-zero block.
        let mut x = random(64 * QK, 8);
        x[..4].copy_from_slice(&[127.0, 63.5, -0.5, 1.5]);
        x[QK..2 * QK].fill(0.0);
        for block in x.chunks_exact(QK) {
            let (mut a, mut b) = ([0i8; QK], [0i8; QK]);
            let fast = quantize_block_fast(block, &mut a, avx2());
            let slow = quantize_block_fast(block, &mut b, false);
            assert_eq!((fast, a), (slow, b));
        }
    }

    #[test]
    fn stacking_keeps_rows_in_order() {
        let a = QMatrix::from_f32(&random(2 * 64, 3), 2, 64).unwrap();
        let b = QMatrix::from_q4_1(&q4_1_bytes(&random(3 * 64, 4)), 3, 64).unwrap();
        let same = QMatrix::stack(vec![a.clone(), a.clone()]).unwrap();
        assert_eq!(same.to_f32(), [a.to_f32(), a.to_f32()].concat());
        let mixed = QMatrix::stack(vec![a.clone(), b.clone()]).unwrap();
        let want = [a.to_f32(), b.to_f32()].concat();
        for (g, w) in mixed.to_f32().iter().zip(&want) {
            assert!((g - w).abs() < 0.02, "{g} vs {w}");
        }
        assert!(QMatrix::from_q8_0(&[0; 33], 1, 32).is_err());
    }
}
