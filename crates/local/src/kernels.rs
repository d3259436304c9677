//! Quantised matrix products for the CPU.
//!
//! Weights keep GGUF's 32-wide blocks, stored as separate arrays of scales
//! and quants: `Q8_0` (one scale, 32 signed bytes) and `Q4_1` (scale, minimum,
//! 32 four-bit values), so the file's `Q4_1` weights are used as they are,
//! at 0.625 bytes a weight. Activations are quantised to 8 bits per block
//! (with the block's sum, for `Q4_1`'s minimum), and every dot product runs
//! on integers: with AVX2 32 multiply-adds per instruction
//! (`vpmaddubsw`), otherwise a portable loop. Rows of a product are split
//! across threads; prompt chunks are multiplied four activation rows at a
//! time so that each weight block is loaded once for all four.
//!
//! This is the crate's only `unsafe` code: the AVX2 intrinsics. Every
//! pointer read is within slices whose lengths the safe callers check, and
//! the SIMD results are compared with the portable ones in the tests.

#![allow(unsafe_code)]

use rayon::prelude::*;

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
    /// `w = d * q + m`, `q` in 0..16, two per byte in GGUF's order (a
    /// block's 16 bytes hold values 0–15 in their low nibbles, 16–31 in
    /// their high nibbles).
    Q4_1 {
        d: Vec<f32>,
        m: Vec<f32>,
        q: Vec<u8>,
    },
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

/// 8-bit quantisation of one block: scale and values in −127..=127.
fn quantize_block(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (o, v) in q.iter_mut().zip(x) {
        *o = (v * id).round().clamp(-127.0, 127.0) as i8;
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
        let blocks = bytes.len() / 20;
        let mut d = Vec::with_capacity(blocks);
        let mut m = Vec::with_capacity(blocks);
        let mut q = Vec::with_capacity(blocks * QK / 2);
        for b in bytes.chunks_exact(20) {
            d.push(f16([b[0], b[1]]));
            m.push(f16([b[2], b[3]]));
            q.extend_from_slice(&b[4..]);
        }
        Ok(Self {
            rows,
            cols,
            quants: Quants::Q4_1 { d, m, q },
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
            Quants::Q4_1 { d, m, q } => {
                for b in 0..nb {
                    let (scale, min) = (d[j * nb + b], m[j * nb + b]);
                    let src = &q[(j * nb + b) * QK / 2..][..QK / 2];
                    let (lo, hi) = out[b * QK..][..QK].split_at_mut(QK / 2);
                    for ((l, h), byte) in lo.iter_mut().zip(hi.iter_mut()).zip(src) {
                        *l = scale * f32::from(byte & 0x0F) + min;
                        *h = scale * f32::from(byte >> 4) + min;
                    }
                }
            }
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
        let all_q41 = parts
            .iter()
            .all(|p| matches!(p.quants, Quants::Q4_1 { .. }));
        let quants = if all_q8 {
            let (mut dd, mut qq) = (Vec::new(), Vec::new());
            for p in parts {
                if let Quants::Q8 { d, q } = p.quants {
                    dd.extend(d);
                    qq.extend(q);
                }
            }
            Quants::Q8 { d: dd, q: qq }
        } else if all_q41 {
            let (mut dd, mut mm, mut qq) = (Vec::new(), Vec::new(), Vec::new());
            for p in parts {
                if let Quants::Q4_1 { d, m, q } = p.quants {
                    dd.extend(d);
                    mm.extend(m);
                    qq.extend(q);
                }
            }
            Quants::Q4_1 {
                d: dd,
                m: mm,
                q: qq,
            }
        } else {
            let dense: Vec<f32> = parts.iter().flat_map(|p| p.to_f32()).collect();
            return Self::from_f32(&dense, rows, cols);
        };
        Ok(Self { rows, cols, quants })
    }

    /// `out = x · selfᵀ`: `x.rows × self.rows`, row-major.
    pub fn matmul(&self, x: &QActs, out: &mut [f32]) {
        let (m, n) = (x.rows, self.rows);
        debug_assert_eq!(x.cols, self.cols);
        debug_assert_eq!(out.len(), m * n);
        let simd = avx2();
        if m == 1 {
            out.par_chunks_mut(ROWS_PER_TASK)
                .enumerate()
                .for_each(|(c, o)| {
                    for (r, v) in o.iter_mut().enumerate() {
                        *v = self.dot(c * ROWS_PER_TASK + r, x, 0, simd);
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
                            let four = self.dot4(j, x, i, simd);
                            dst[i..i + 4].copy_from_slice(&four);
                            i += 4;
                        }
                        while i < i1 {
                            dst[i] = self.dot(j, x, i, simd);
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

    /// Weight row `j` · activation row `i`.
    fn dot(&self, j: usize, x: &QActs, i: usize, simd: bool) -> f32 {
        let nb = self.cols / QK;
        let (xd, xs, xq) = x.row(i);
        match &self.quants {
            Quants::Q8 { d, q } => {
                let (wd, wq) = (&d[j * nb..][..nb], &q[j * self.cols..][..self.cols]);
                #[cfg(target_arch = "x86_64")]
                if simd {
                    // SAFETY: AVX2 and FMA are present (`avx2()`), and every
                    // slice holds `nb` blocks.
                    return unsafe { x86::dot_q8(wd, wq, xd, xq) };
                }
                let _ = (simd, xs);
                dot_q8_portable(wd, wq, xd, xq)
            }
            Quants::Q4_1 { d, m, q } => {
                let (wd, wm) = (&d[j * nb..][..nb], &m[j * nb..][..nb]);
                let wq = &q[j * self.cols / 2..][..self.cols / 2];
                #[cfg(target_arch = "x86_64")]
                if simd {
                    // SAFETY: as above.
                    return unsafe { x86::dot_q4_1(wd, wm, wq, xd, xs, xq) };
                }
                let _ = simd;
                dot_q4_1_portable(wd, wm, wq, xd, xs, xq)
            }
        }
    }

    /// Weight row `j` · activation rows `i..i + 4`.
    fn dot4(&self, j: usize, x: &QActs, i: usize, simd: bool) -> [f32; 4] {
        #[cfg(target_arch = "x86_64")]
        if simd {
            let nb = self.cols / QK;
            let rows = [x.row(i), x.row(i + 1), x.row(i + 2), x.row(i + 3)];
            match &self.quants {
                Quants::Q8 { d, q } => {
                    let (wd, wq) = (&d[j * nb..][..nb], &q[j * self.cols..][..self.cols]);
                    // SAFETY: AVX2 and FMA are present, every slice holds
                    // `nb` blocks.
                    return unsafe { x86::dot4_q8(wd, wq, &rows) };
                }
                Quants::Q4_1 { d, m, q } => {
                    let (wd, wm) = (&d[j * nb..][..nb], &m[j * nb..][..nb]);
                    let wq = &q[j * self.cols / 2..][..self.cols / 2];
                    // SAFETY: as above.
                    return unsafe { x86::dot4_q4_1(wd, wm, wq, &rows) };
                }
            }
        }
        [
            self.dot(j, x, i, simd),
            self.dot(j, x, i + 1, simd),
            self.dot(j, x, i + 2, simd),
            self.dot(j, x, i + 3, simd),
        ]
    }
}

impl QActs {
    /// Quantises `x` (`rows × cols`, row-major), reusing this buffer.
    pub fn quantize(&mut self, x: &[f32], rows: usize, cols: usize) {
        debug_assert_eq!(x.len(), rows * cols);
        debug_assert_eq!(cols % QK, 0);
        self.rows = rows;
        self.cols = cols;
        let blocks = rows * cols / QK;
        self.d.resize(blocks, 0.0);
        self.s.resize(blocks, 0.0);
        self.q.resize(rows * cols, 0);
        for (b, (src, q)) in x
            .chunks_exact(QK)
            .zip(self.q.chunks_exact_mut(QK))
            .enumerate()
        {
            let d = quantize_block(src, q);
            self.d[b] = d;
            self.s[b] = d * q.iter().map(|&v| i32::from(v)).sum::<i32>() as f32;
        }
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

fn dot_q8_portable(wd: &[f32], wq: &[i8], xd: &[f32], xq: &[i8]) -> f32 {
    let mut sum = 0f32;
    for (b, (ws, xs)) in wq.chunks_exact(QK).zip(xq.chunks_exact(QK)).enumerate() {
        let dot: i32 = ws
            .iter()
            .zip(xs)
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
        sum += wd[b] * xd[b] * dot as f32;
    }
    sum
}

fn dot_q4_1_portable(wd: &[f32], wm: &[f32], wq: &[u8], xd: &[f32], xs: &[f32], xq: &[i8]) -> f32 {
    let mut sum = 0f32;
    for (b, (ws, x)) in wq.chunks_exact(QK / 2).zip(xq.chunks_exact(QK)).enumerate() {
        let mut dot = 0i32;
        for (k, byte) in ws.iter().enumerate() {
            dot += i32::from(byte & 0x0F) * i32::from(x[k]);
            dot += i32::from(byte >> 4) * i32::from(x[k + QK / 2]);
        }
        sum += wd[b] * xd[b] * dot as f32 + wm[b] * xs[b];
    }
    sum
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
    use super::QK;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// Σ a·b over 32 signed bytes, as eight i32 lanes turned to f32. `a`'s
    /// magnitude goes to the unsigned operand of `vpmaddubsw`, its sign onto
    /// `b`; `b` never holds −128 (activations are clamped to ±127).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_i8(a_abs: __m256i, a: __m256i, b: __m256i) -> __m256 {
        let p = _mm256_maddubs_epi16(a_abs, _mm256_sign_epi8(b, a));
        _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)))
    }

    /// Σ u·b over 32 unsigned (0..16) and signed bytes.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_u4(u: __m256i, b: __m256i) -> __m256 {
        let p = _mm256_maddubs_epi16(u, b);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)))
    }

    /// A `Q4_1` block's 16 bytes as 32 values in order.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn unpack_q4(p: *const u8) -> __m256i {
        let raw = _mm_loadu_si128(p as *const __m128i);
        let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
    }

    /// # Safety
    /// AVX2 and FMA must be present; `wq` and `xq` hold `32 * wd.len()`
    /// values and `xd` at least `wd.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q8(wd: &[f32], wq: &[i8], xd: &[f32], xq: &[i8]) -> f32 {
        let nb = wd.len().min(xd.len()).min(wq.len() / QK).min(xq.len() / QK);
        let mut acc = _mm256_setzero_ps();
        for b in 0..nb {
            let w = _mm256_loadu_si256(wq.as_ptr().add(b * QK) as *const __m256i);
            let x = _mm256_loadu_si256(xq.as_ptr().add(b * QK) as *const __m256i);
            let d = _mm256_set1_ps(wd[b] * xd[b]);
            acc = _mm256_fmadd_ps(d, dot_i8(_mm256_sign_epi8(w, w), w, x), acc);
        }
        hsum(acc)
    }

    /// # Safety
    /// As [`dot_q8`], with `wq` holding `16 * wd.len()` bytes and `wm`, `xs`
    /// at least `wd.len()` values.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q4_1(
        wd: &[f32],
        wm: &[f32],
        wq: &[u8],
        xd: &[f32],
        xs: &[f32],
        xq: &[i8],
    ) -> f32 {
        let nb = wd
            .len()
            .min(wm.len())
            .min(xd.len())
            .min(xs.len())
            .min(wq.len() / (QK / 2))
            .min(xq.len() / QK);
        let mut acc = _mm256_setzero_ps();
        let mut mins = 0f32;
        for b in 0..nb {
            let w = unpack_q4(wq.as_ptr().add(b * QK / 2));
            let x = _mm256_loadu_si256(xq.as_ptr().add(b * QK) as *const __m256i);
            let d = _mm256_set1_ps(wd[b] * xd[b]);
            acc = _mm256_fmadd_ps(d, dot_u4(w, x), acc);
            mins += wm[b] * xs[b];
        }
        hsum(acc) + mins
    }

    type Row<'a> = (&'a [f32], &'a [f32], &'a [i8]);

    fn blocks(wd: &[f32], rows: &[Row<'_>; 4]) -> usize {
        rows.iter().fold(wd.len(), |nb, (d, s, q)| {
            nb.min(d.len()).min(s.len()).min(q.len() / QK)
        })
    }

    /// # Safety
    /// As [`dot_q8`], for four activation rows.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4_q8(wd: &[f32], wq: &[i8], rows: &[Row<'_>; 4]) -> [f32; 4] {
        let nb = blocks(wd, rows).min(wq.len() / QK);
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..nb {
            let w = _mm256_loadu_si256(wq.as_ptr().add(b * QK) as *const __m256i);
            let w_abs = _mm256_sign_epi8(w, w);
            for (a, (xd, _, xq)) in acc.iter_mut().zip(rows) {
                let x = _mm256_loadu_si256(xq.as_ptr().add(b * QK) as *const __m256i);
                let d = _mm256_set1_ps(wd[b] * xd[b]);
                *a = _mm256_fmadd_ps(d, dot_i8(w_abs, w, x), *a);
            }
        }
        [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])]
    }

    /// # Safety
    /// As [`dot_q4_1`], for four activation rows.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4_q4_1(wd: &[f32], wm: &[f32], wq: &[u8], rows: &[Row<'_>; 4]) -> [f32; 4] {
        let nb = blocks(wd, rows).min(wm.len()).min(wq.len() / (QK / 2));
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut mins = [0f32; 4];
        for b in 0..nb {
            let w = unpack_q4(wq.as_ptr().add(b * QK / 2));
            for ((a, m), (xd, xs, xq)) in acc.iter_mut().zip(mins.iter_mut()).zip(rows) {
                let x = _mm256_loadu_si256(xq.as_ptr().add(b * QK) as *const __m256i);
                let d = _mm256_set1_ps(wd[b] * xd[b]);
                *a = _mm256_fmadd_ps(d, dot_u4(w, x), *a);
                *m += wm[b] * xs[b];
            }
        }
        [
            hsum(acc[0]) + mins[0],
            hsum(acc[1]) + mins[1],
            hsum(acc[2]) + mins[2],
            hsum(acc[3]) + mins[3],
        ]
    }
}

/// A read-only matrix view: element `(i, j)` is `data[i * row + j * col]`.
#[derive(Clone, Copy)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub row: usize,
    pub col: usize,
}

impl<'a> Strided<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row: cols,
            col: 1,
        }
    }

    /// Whether every element of an `r × c` matrix lies inside `data`.
    fn holds(&self, r: usize, c: usize) -> bool {
        r == 0
            || c == 0
            || (r - 1)
                .checked_mul(self.row)
                .zip((c - 1).checked_mul(self.col))
                .and_then(|(a, b)| a.checked_add(b))
                .is_some_and(|last| last < self.data.len())
    }
}

/// `out = alpha · a · b` with `a` `m × k`, `b` `k × n` (any strides) and
/// `out` `m × n` row-major, by the `gemm` crate's cache-blocked f32
/// kernels, on the rayon pool when `parallel`. Shapes that do not fit their
/// slices leave `out` untouched (callers size them; this is the check that
/// keeps the call sound).
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'_>,
    b: Strided<'_>,
    alpha: f32,
    out: &mut [f32],
    parallel: bool,
) {
    let fits = a.holds(m, k) && b.holds(k, n) && out.len() >= m * n;
    if !fits || m == 0 || n == 0 || k == 0 {
        debug_assert!(fits, "gemm shapes do not fit their slices");
        return;
    }
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `holds` checked that every element the shapes and strides
    // address lies inside `a.data` and `b.data`, and `out` has room for
    // m×n row-major values; `out` is a unique borrow, so it aliases
    // neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr(),
            a.col as isize,
            a.row as isize,
            b.data.as_ptr(),
            b.col as isize,
            b.row as isize,
            0.0,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// GGUF `Q4_1` bytes for dense values (the reference quantiser).
    fn q4_1_bytes(x: &[f32]) -> Vec<u8> {
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
        for i in 0..m {
            for j in 0..w.rows {
                let a = w.dot(j, &acts, i, avx2());
                let b = w.dot(j, &acts, i, false);
                assert!((a - b).abs() <= 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
            }
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
    fn strided_gemm_matches_loops_and_refuses_what_does_not_fit() {
        // a: 3×4 taken column-major out of a longer buffer; b: 4×2 rows.
        let a_data = random(20, 5);
        let b_data = random(8, 6);
        let a = Strided {
            data: &a_data,
            row: 1,
            col: 3,
        };
        let b = Strided::rows(&b_data, 2);
        let mut out = vec![0f32; 6];
        gemm_f32(3, 2, 4, a, b, 0.5, &mut out, false);
        for i in 0..3 {
            for j in 0..2 {
                let want: f32 = (0..4)
                    .map(|k| a_data[i + 3 * k] * b_data[k * 2 + j])
                    .sum::<f32>()
                    * 0.5;
                assert!((out[i * 2 + j] - want).abs() < 1e-5);
            }
        }
        let short = Strided {
            data: &a_data[..5],
            row: 1,
            col: 3,
        };
        assert!(!short.holds(3, 4));
        assert!(a.holds(3, 4));
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
