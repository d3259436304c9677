//! Dense f32 products through the `gemm` crate, on strided views.

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
    use crate::kernels::tests::random;

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
}
