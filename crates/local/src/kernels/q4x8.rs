//! `Q4_1` weights repacked eight rows at a time, and their integer GEMM.
//!
//! Rows are grouped by eight (the last group padded with zero rows). For
//! group `g` and block `b` (32 columns) the eight rows' scales and minima
//! are stored side by side, `d[(g * nb + b) * 8 + r]`, followed in `q` by
//! 128 bytes of quants read as four 32-byte vectors: in vector `l`, byte
//! `4r + j` holds row `r`'s value for column `8l + j` in its low nibble and
//! for column `8l + 4 + j` in its high nibble. One vector, masked, is then
//! four consecutive columns of eight rows, and one `vpmaddubsw` against a
//! token's four activation bytes (broadcast) is 32 multiply-adds whose
//! eight 32-bit lanes are the eight rows.
//!
//! The kernel computes a tile of eight rows × up to four tokens per pass:
//! each weight vector is unpacked once for the four tokens, a block's
//! products are summed in 16 bits (at most 8 × 2 × 15 × 127 = 30,480, so
//! nothing saturates) and turned to f32 once per block and token, where
//! the block's scales are applied: `dot = d·s·Σq·a + m·s·Σa`. On CPUs with
//! AVX-512 VNNI the same kernel, on the same 256-bit vectors, multiplies
//! and sums into 32 bits with one `vpdpbusd`. The portable fallback reads
//! the same layout.

use super::{QActs, ShapeError, QK};
use rayon::prelude::*;

/// Rows per group of the packed layout.
const GR: usize = 8;
/// Packed bytes of one group's block.
const GB: usize = GR * QK / 2;
/// Row groups handled by one task when the product is split by rows.
const GROUPS_PER_TASK: usize = 4;
/// Tokens multiplied against one weight row group per pass.
const TILE: usize = 4;
/// Most tokens handled by one task when the product is split by tokens.
const MAX_TOKENS_PER_TASK: usize = 64;

#[derive(Debug, Clone)]
pub struct Q4x8 {
    rows: usize,
    cols: usize,
    d: Vec<f32>,
    m: Vec<f32>,
    q: Vec<u8>,
}

fn f16(bytes: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(bytes).to_f32()
}

/// Where column `k` of row `r` (in its group) sits in a group's block:
/// byte index and whether it is the high nibble.
fn place(r: usize, k: usize) -> (usize, bool) {
    let (l, within) = (k / 8, k % 8);
    (l * 32 + 4 * r + within % 4, within >= 4)
}

impl Q4x8 {
    /// From GGUF `Q4_1` bytes (per block: f16 scale, f16 minimum, 16 bytes
    /// of nibbles, values 0–15 in the low nibbles and 16–31 in the high).
    pub fn from_gguf(bytes: &[u8], rows: usize, cols: usize) -> Result<Self, ShapeError> {
        if !cols.is_multiple_of(QK) || bytes.len() != rows * cols / QK * 20 {
            return Err(ShapeError(format!(
                "{} bytes for a {rows}×{cols} Q4_1 matrix",
                bytes.len()
            )));
        }
        let nb = cols / QK;
        let groups = rows.div_ceil(GR);
        let mut d = vec![0f32; groups * nb * GR];
        let mut m = vec![0f32; groups * nb * GR];
        let mut q = vec![0u8; groups * nb * GB];
        let row_bytes = nb * 20;
        d.par_chunks_mut(nb * GR)
            .zip(m.par_chunks_mut(nb * GR))
            .zip(q.par_chunks_mut(nb * GB))
            .zip(bytes.par_chunks(GR * row_bytes))
            .for_each(|(((d, m), q), src)| {
                for (r, row) in src.chunks_exact(row_bytes).enumerate() {
                    let blocks = row.chunks_exact(20).zip(q.chunks_exact_mut(GB));
                    for (b, (blk, dst)) in blocks.enumerate() {
                        d[b * GR + r] = f16([blk[0], blk[1]]);
                        m[b * GR + r] = f16([blk[2], blk[3]]);
                        let mut vals = [0u8; QK];
                        for (i, byte) in blk[4..].iter().enumerate() {
                            vals[i] = byte & 0x0F;
                            vals[i + QK / 2] = byte >> 4;
                        }
                        for l in 0..4 {
                            for j in 0..4 {
                                dst[l * 32 + 4 * r + j] =
                                    vals[8 * l + j] | (vals[8 * l + 4 + j] << 4);
                            }
                        }
                    }
                }
            });
        Ok(Self {
            rows,
            cols,
            d,
            m,
            q,
        })
    }

    fn nb(&self) -> usize {
        self.cols / QK
    }

    /// Row `j`'s block `b`: scale, minimum and its 32 values.
    fn block(&self, j: usize, b: usize) -> (f32, f32, [u8; QK]) {
        let gb = (j / GR) * self.nb() + b;
        let r = j % GR;
        let src = &self.q[gb * GB..][..GB];
        let mut vals = [0u8; QK];
        for (k, v) in vals.iter_mut().enumerate() {
            let (at, high) = place(r, k);
            *v = if high { src[at] >> 4 } else { src[at] & 0x0F };
        }
        (self.d[gb * GR + r], self.m[gb * GR + r], vals)
    }

    /// Row `j`, dequantised into `out` (`cols` values).
    pub fn row(&self, j: usize, out: &mut [f32]) {
        for (b, o) in out.chunks_exact_mut(QK).take(self.nb()).enumerate() {
            let (d, m, vals) = self.block(j, b);
            for (o, v) in o.iter_mut().zip(vals) {
                *o = d * f32::from(v) + m;
            }
        }
    }

    /// Row `j` as GGUF `Q4_1` bytes (the scales were f16, so this is exact).
    fn gguf_row(&self, j: usize, out: &mut Vec<u8>) {
        for b in 0..self.nb() {
            let (d, m, vals) = self.block(j, b);
            out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
            out.extend_from_slice(&half::f16::from_f32(m).to_le_bytes());
            out.extend((0..QK / 2).map(|i| vals[i] | (vals[i + QK / 2] << 4)));
        }
    }

    /// Matrices of the same width stacked by rows.
    pub fn stack(parts: &[&Q4x8]) -> Result<Self, ShapeError> {
        let cols = parts.first().map_or(0, |p| p.cols);
        let rows = parts.iter().map(|p| p.rows).sum();
        let whole = parts
            .split_last()
            .is_none_or(|(_, init)| init.iter().all(|p| p.rows.is_multiple_of(GR)));
        if whole && parts.iter().all(|p| p.cols == cols) {
            // Every part but the last fills its groups: the groups follow
            // one another, the last part's padding pads the whole.
            return Ok(Self {
                rows,
                cols,
                d: parts.iter().map(|p| &p.d[..]).collect::<Vec<_>>().concat(),
                m: parts.iter().map(|p| &p.m[..]).collect::<Vec<_>>().concat(),
                q: parts.iter().map(|p| &p.q[..]).collect::<Vec<_>>().concat(),
            });
        }
        let mut bytes = Vec::with_capacity(rows * cols / QK * 20);
        for p in parts {
            for j in 0..p.rows {
                p.gguf_row(j, &mut bytes);
            }
        }
        Self::from_gguf(&bytes, rows, cols)
    }

    /// `out = x · selfᵀ` (`x.rows × self.rows`, row-major), on `isa`'s
    /// kernel. Shapes that do not fit leave `out` untouched.
    pub fn matmul(&self, x: &QActs, out: &mut [f32], isa: Isa) {
        let (m, n) = (x.rows, self.rows);
        let fits = x.cols == self.cols && out.len() >= m * n;
        if !fits || m == 0 || n == 0 {
            debug_assert!(fits, "matmul shapes do not fit");
            return;
        }
        let out = &mut out[..m * n];
        let threads = rayon::current_num_threads().max(1);
        if m >= 2 * TILE * threads {
            // Prompt chunks: each task takes a run of tokens (whole output
            // rows) and every weight row group; a group's weights stay in
            // L1 while the run's tokens pass over them.
            let per = m
                .div_ceil(2 * threads)
                .next_multiple_of(TILE)
                .min(MAX_TOKENS_PER_TASK);
            out.par_chunks_mut(per * n).enumerate().for_each(|(c, o)| {
                let count = o.len() / n;
                for g in 0..n.div_ceil(GR) {
                    self.group(g, x, c * per, count, o, n, g * GR, isa);
                }
            });
        } else if m == 1 {
            let span = GROUPS_PER_TASK * GR;
            out.par_chunks_mut(span).enumerate().for_each(|(c, o)| {
                for g in c * GROUPS_PER_TASK..(c * span + o.len()).div_ceil(GR) {
                    self.group(g, x, 0, 1, o, 0, g * GR - c * span, isa);
                }
            });
        } else {
            // A few tokens: split by rows into per-task buffers.
            let span = GROUPS_PER_TASK * GR;
            let parts: Vec<Vec<f32>> = (0..n.div_ceil(span))
                .into_par_iter()
                .map(|c| {
                    let width = span.min(n - c * span);
                    let mut o = vec![0f32; m * width];
                    for g in c * GROUPS_PER_TASK..(c * span + width).div_ceil(GR) {
                        self.group(g, x, 0, m, &mut o, width, g * GR - c * span, isa);
                    }
                    o
                })
                .collect();
            for (c, part) in parts.iter().enumerate() {
                let width = span.min(n - c * span);
                for (dst, src) in out.chunks_exact_mut(n).zip(part.chunks_exact(width)) {
                    dst[c * span..][..width].copy_from_slice(src);
                }
            }
        }
    }

    /// Row group `g` against tokens `i0..i0 + count`: writes token `i0 + t`,
    /// row `8g + r` to `out[t * ld + col + r]`.
    #[allow(clippy::too_many_arguments)]
    fn group(
        &self,
        g: usize,
        x: &QActs,
        i0: usize,
        count: usize,
        out: &mut [f32],
        ld: usize,
        col: usize,
        isa: Isa,
    ) {
        let nb = self.nb();
        let w = Group {
            d: &self.d[g * nb * GR..][..nb * GR],
            m: &self.m[g * nb * GR..][..nb * GR],
            q: &self.q[g * nb * GB..][..nb * GB],
        };
        let acts = Tokens {
            d: &x.d[i0 * nb..][..count * nb],
            s: &x.s[i0 * nb..][..count * nb],
            q: &x.q[i0 * nb * QK..][..count * nb * QK],
            nb,
            count,
        };
        let mut dst = Dest {
            out,
            ld,
            col,
            valid: GR.min(self.rows - g * GR),
        };
        run(&w, &acts, &mut dst, isa);
    }
}

/// The kernels of the GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub enum Isa {
    Portable,
    /// AVX2 and FMA: `vpmaddubsw`.
    Avx2,
    /// AVX-512 VNNI (with VL and BW) on 256-bit vectors: `vpdpbusd`.
    Vnni,
}

impl Isa {
    /// The fastest kernel this CPU runs: `Vnni`, else `Avx2` when `simd`.
    pub fn best(simd: bool) -> Self {
        if !simd {
            return Isa::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        {
            use std::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512vnni") {
                return Isa::Vnni;
            }
        }
        Isa::Avx2
    }
}

/// One row group's scales, minima and packed quants (`nb` blocks).
struct Group<'a> {
    d: &'a [f32],
    m: &'a [f32],
    q: &'a [u8],
}

/// `count` consecutive tokens' quantised activations, `nb` blocks each.
struct Tokens<'a> {
    d: &'a [f32],
    s: &'a [f32],
    q: &'a [i8],
    nb: usize,
    count: usize,
}

/// Where token `t`'s results for the group's first `valid` rows go:
/// `out[t * ld + col..][..valid]`.
struct Dest<'a> {
    out: &'a mut [f32],
    ld: usize,
    col: usize,
    valid: usize,
}

/// A row group against all of `x`'s tokens on `isa`'s kernel. Checks every
/// length the kernels rely on.
fn run(w: &Group<'_>, x: &Tokens<'_>, dst: &mut Dest<'_>, isa: Isa) {
    let nb = x.nb;
    let fits = w.d.len() >= nb * GR
        && w.m.len() >= nb * GR
        && w.q.len() >= nb * GB
        && x.d.len() >= x.count * nb
        && x.s.len() >= x.count * nb
        && x.q.len() >= x.count * nb * QK
        && dst.valid <= GR
        && (x.count == 0 || dst.out.len() >= (x.count - 1) * dst.ld + dst.col + dst.valid);
    if !fits {
        debug_assert!(fits, "row group shapes do not fit");
        return;
    }
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: the instruction sets are present (`Isa::best` detected
        // them), and the lengths the kernels read and write were checked
        // above.
        Isa::Avx2 => return unsafe { x86::group(w, x, dst) },
        Isa::Vnni => return unsafe { x86::group_vnni(w, x, dst) },
        Isa::Portable => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    for t in 0..x.count {
        let mut o = [0f32; GR];
        let xd = &x.d[t * nb..][..nb];
        let xs = &x.s[t * nb..][..nb];
        let xq = &x.q[t * nb * QK..][..nb * QK];
        let blocks = w.q.chunks_exact(GB).zip(xq.chunks_exact(QK));
        for (b, (wq, a)) in blocks.enumerate() {
            for (r, o) in o.iter_mut().enumerate() {
                let mut dot = 0i32;
                for (k, a) in a.iter().enumerate() {
                    let (at, high) = place(r, k);
                    let v = if high { wq[at] >> 4 } else { wq[at] & 0x0F };
                    dot += i32::from(v) * i32::from(*a);
                }
                *o += w.d[b * GR + r] * xd[b] * dot as f32 + w.m[b * GR + r] * xs[b];
            }
        }
        dst.out[t * dst.ld + dst.col..][..dst.valid].copy_from_slice(&o[..dst.valid]);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Dest, Group, Tokens, GB, GR, QK};
    use std::arch::x86_64::*;

    /// A row group's kernel for one instruction set: `$group` runs
    /// `$tile::<T>` over the tokens, four at a time. `$step` adds one
    /// vector of products (`lo`/`hi` weights against broadcast
    /// activations `a0`/`a1`) to a block's sums, `$finish` turns the sums
    /// into eight f32 lanes.
    macro_rules! kernel {
        ($group:ident, $tile:ident, $feat:literal,
         |$s:ident, $lo:ident, $hi:ident, $a0:ident, $a1:ident| $step:expr,
         |$f:ident| $finish:expr) => {
            /// # Safety
            /// The target features must be present, and the lengths
            /// [`super::run`] checks must hold.
            #[target_feature(enable = $feat)]
            pub unsafe fn $group(w: &Group<'_>, x: &Tokens<'_>, dst: &mut Dest<'_>) {
                let mut t = 0;
                while t + 4 <= x.count {
                    $tile::<4>(w, x, t, dst);
                    t += 4;
                }
                match x.count - t {
                    3 => $tile::<3>(w, x, t, dst),
                    2 => $tile::<2>(w, x, t, dst),
                    1 => $tile::<1>(w, x, t, dst),
                    _ => {}
                }
            }

            /// Eight weight rows · tokens `t0..t0 + T`.
            #[target_feature(enable = $feat)]
            unsafe fn $tile<const T: usize>(
                w: &Group<'_>,
                x: &Tokens<'_>,
                t0: usize,
                dst: &mut Dest<'_>,
            ) {
                let nb = x.nb;
                let xq: [*const i8; T] =
                    std::array::from_fn(|t| x.q.as_ptr().add((t0 + t) * nb * QK));
                let xd: [*const f32; T] = std::array::from_fn(|t| x.d.as_ptr().add((t0 + t) * nb));
                let xs: [*const f32; T] = std::array::from_fn(|t| x.s.as_ptr().add((t0 + t) * nb));
                let mask = _mm256_set1_epi8(0x0F);
                let mut acc = [_mm256_setzero_ps(); T];
                for b in 0..nb {
                    let wp = w.q.as_ptr().add(b * GB);
                    let mut sums = [_mm256_setzero_si256(); T];
                    for l in 0..4 {
                        let raw = _mm256_loadu_si256(wp.add(l * 32) as *const __m256i);
                        let $lo = _mm256_and_si256(raw, mask);
                        let $hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
                        for ($s, xq) in sums.iter_mut().zip(xq) {
                            let p = xq.add(b * QK + l * 8) as *const i32;
                            let $a0 = _mm256_set1_epi32(p.read_unaligned());
                            let $a1 = _mm256_set1_epi32(p.add(1).read_unaligned());
                            *$s = $step;
                        }
                    }
                    let dw = _mm256_loadu_ps(w.d.as_ptr().add(b * GR));
                    let mw = _mm256_loadu_ps(w.m.as_ptr().add(b * GR));
                    for t in 0..T {
                        let $f = sums[t];
                        let dot = $finish;
                        let scale = _mm256_mul_ps(dw, _mm256_set1_ps(*xd[t].add(b)));
                        acc[t] = _mm256_fmadd_ps(dot, scale, acc[t]);
                        acc[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(*xs[t].add(b)), acc[t]);
                    }
                }
                let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(dst.valid as i32), lanes);
                for (t, a) in acc.into_iter().enumerate() {
                    let p = dst.out.as_mut_ptr().add((t0 + t) * dst.ld + dst.col);
                    if dst.valid == GR {
                        _mm256_storeu_ps(p, a);
                    } else {
                        _mm256_maskstore_ps(p, keep, a);
                    }
                }
            }
        };
    }

    // AVX2: `vpmaddubsw` pairs summed in 16 bits, widened once per block.
    kernel!(
        group,
        tile,
        "avx2,fma",
        |s, lo, hi, a0, a1| _mm256_add_epi16(
            *s,
            _mm256_add_epi16(_mm256_maddubs_epi16(lo, a0), _mm256_maddubs_epi16(hi, a1)),
        ),
        |sum| _mm256_cvtepi32_ps(_mm256_madd_epi16(sum, _mm256_set1_epi16(1)))
    );

    // AVX-512 VNNI on 256-bit vectors: `vpdpbusd` multiplies and sums into
    // 32 bits in one instruction.
    kernel!(
        group_vnni,
        tile_vnni,
        "avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni",
        |s, lo, hi, a0, a1| _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(*s, lo, a0), hi, a1),
        |sum| _mm256_cvtepi32_ps(sum)
    );
}

#[cfg(test)]
mod tests {
    use super::super::tests::{q4_1_bytes, random};
    use super::super::{avx2, QMatrix};
    use super::*;

    /// The product straight from the GGUF bytes: dequantised weights times
    /// the dequantised 8-bit activations, in f64.
    fn reference(bytes: &[u8], rows: usize, cols: usize, x: &QActs) -> Vec<f32> {
        let nb = cols / QK;
        let mut out = vec![0f32; x.rows * rows];
        for i in 0..x.rows {
            let (xd, _, xq) = x.row(i);
            for j in 0..rows {
                let mut sum = 0f64;
                for b in 0..nb {
                    let blk = &bytes[(j * nb + b) * 20..][..20];
                    let d = f64::from(f16([blk[0], blk[1]]));
                    let m = f64::from(f16([blk[2], blk[3]]));
                    for k in 0..QK {
                        let byte = blk[4 + k % 16];
                        let v = if k < 16 { byte & 0x0F } else { byte >> 4 };
                        let w = d * f64::from(v) + m;
                        sum += w * f64::from(xd[b]) * f64::from(xq[b * QK + k]);
                    }
                }
                out[i * rows + j] = sum as f32;
            }
        }
        out
    }

    #[test]
    fn packed_gemm_matches_the_scalar_reference() {
        let mut paths = vec![Isa::Portable];
        if avx2() {
            paths.push(Isa::Avx2);
        }
        if Isa::best(avx2()) == Isa::Vnni {
            paths.push(Isa::Vnni);
        }
        // Rows and tokens that are and are not multiples of the tile, one
        // token (generation), a few (split by rows), many (split by tokens).
        for (rows, cols) in [(8, 32), (13, 64), (67, 128), (96, 96), (40, 1536)] {
            let bytes = q4_1_bytes(&random(rows * cols, rows as u64));
            let w = Q4x8::from_gguf(&bytes, rows, cols).unwrap();
            for m in [1, 2, 3, 5, 7, 16, 37, 70] {
                let mut acts = QActs::default();
                acts.quantize(&random(m * cols, 7 + m as u64), m, cols);
                let want = reference(&bytes, rows, cols, &acts);
                for &isa in &paths {
                    let mut got = vec![f32::NAN; m * rows];
                    w.matmul(&acts, &mut got, isa);
                    for (g, r) in got.iter().zip(&want) {
                        assert!(
                            (g - r).abs() <= 1e-4 * (1.0 + r.abs()),
                            "{rows}×{cols}, {m} tokens, {isa:?}: {g} vs {r}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn packing_round_trips_rows_and_stacks() {
        let (rows, cols) = (11, 64);
        let bytes = q4_1_bytes(&random(rows * cols, 3));
        let w = Q4x8::from_gguf(&bytes, rows, cols).unwrap();
        let mut again = Vec::new();
        for j in 0..rows {
            w.gguf_row(j, &mut again);
        }
        assert_eq!(again, bytes);
        // Parts that fill their row groups are concatenated, others
        // repacked: both keep every row.
        let sixteen = Q4x8::from_gguf(&q4_1_bytes(&random(16 * cols, 4)), 16, cols).unwrap();
        for parts in [[&w, &w], [&sixteen, &w]] {
            let stacked = Q4x8::stack(&parts).unwrap();
            assert_eq!(stacked.rows, parts[0].rows + rows);
            let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
            for j in 0..stacked.rows {
                stacked.row(j, &mut a);
                let (part, k) = if j < parts[0].rows {
                    (parts[0], j)
                } else {
                    (parts[1], j - parts[0].rows)
                };
                part.row(k, &mut b);
                assert_eq!(a, b);
            }
        }
        assert!(Q4x8::from_gguf(&bytes[1..], rows, cols).is_err());
        assert!(QMatrix::from_q4_1(&bytes, rows, cols).is_ok());
    }
}
