//! `Q8_0` rows: one weight row against one or four tokens (the token
//! embedding, used as the output projection).

use super::{QActs, QK};

/// A `Q8_0` matrix's rows.
pub(super) struct Q8Rows<'a> {
    pub(super) d: &'a [f32],
    pub(super) q: &'a [i8],
    pub(super) cols: usize,
}

impl Q8Rows<'_> {
    /// Weight row `j` · activation row `i`.
    pub(super) fn dot(&self, j: usize, x: &QActs, i: usize, simd: bool) -> f32 {
        let nb = self.cols / QK;
        let (xd, _, xq) = x.row(i);
        let (wd, wq) = (
            &self.d[j * nb..][..nb],
            &self.q[j * self.cols..][..self.cols],
        );
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: AVX2 and FMA are present (`avx2()`), and every slice
            // holds `nb` blocks.
            return unsafe { x86::dot_q8(wd, wq, xd, xq) };
        }
        let _ = simd;
        dot_q8_portable(wd, wq, xd, xq)
    }

    /// Weight row `j` · activation rows `i..i + 4`.
    pub(super) fn dot4(&self, j: usize, x: &QActs, i: usize, simd: bool) -> [f32; 4] {
        #[cfg(target_arch = "x86_64")]
        if simd {
            let nb = self.cols / QK;
            let rows = [x.row(i), x.row(i + 1), x.row(i + 2), x.row(i + 3)];
            let (wd, wq) = (
                &self.d[j * nb..][..nb],
                &self.q[j * self.cols..][..self.cols],
            );
            // SAFETY: AVX2 and FMA are present, every slice holds `nb`
            // blocks.
            return unsafe { x86::dot4_q8(wd, wq, &rows) };
        }
        [
            self.dot(j, x, i, simd),
            self.dot(j, x, i + 1, simd),
            self.dot(j, x, i + 2, simd),
            self.dot(j, x, i + 3, simd),
        ]
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
}
