//! A llama-family transformer read from a GGUF file and run on the CPU.
//!
//! candle reads the GGUF container (metadata, tensor directory) and
//! converts quantisations this crate has no kernel for; the forward pass
//! itself is plain Rust over [`crate::kernels`]: weights stay in the file's
//! `Q4_1`/`Q8_0` blocks (others become `Q8_0` at load), the query/key/value
//! and gate/up projections are fused so each layer runs four products, and
//! the token embedding stays quantised (rows are looked up in place; the
//! same matrix is the output projection when the model ties them).
//!
//! The weights are loaded once and shared; each sequence has its own
//! [`Cache`] of keys and values.

use crate::kernels::{gemm_f32, QActs, QMatrix, Strided};
use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::Device;
use rayon::prelude::*;
use std::io::{Read, Seek, SeekFrom};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(pub String);

pub type Result<T> = std::result::Result<T, ModelError>;

fn err(e: impl std::fmt::Display) -> ModelError {
    ModelError(e.to_string())
}

/// The shape of the network, from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct Hyper {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub context: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    pub vocab: usize,
}

struct Layer {
    attn_norm: Vec<f32>,
    /// Query, key and value projections, stacked by rows.
    qkv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    /// Gate and up projections, stacked by rows.
    gate_up: QMatrix,
    down: QMatrix,
}

pub struct Weights {
    pub hyper: Hyper,
    embedding: QMatrix,
    /// `None` when the output projection is the embedding (tied).
    output: Option<QMatrix>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// Rotary angles, `context × head_dim/2`.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// One sequence's keys and values, per layer, `position × kv width`.
pub struct Cache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    pub len: usize,
}

impl Cache {
    pub fn new(w: &Weights) -> Self {
        Self {
            k: vec![Vec::new(); w.hyper.n_layer],
            v: vec![Vec::new(); w.hyper.n_layer],
            len: 0,
        }
    }
}

fn md_u32(ct: &gguf_file::Content, key: &str) -> Result<usize> {
    match ct.metadata.get(key) {
        Some(v) => Ok(v.to_u32().map_err(err)? as usize),
        None => Err(ModelError(format!("the GGUF metadata lacks `{key}`"))),
    }
}

fn md_f32(ct: &gguf_file::Content, key: &str) -> Option<f32> {
    ct.metadata.get(key).and_then(|v| v.to_f32().ok())
}

impl Hyper {
    pub fn read(ct: &gguf_file::Content) -> Result<Self> {
        let arch = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if arch != "llama" {
            return Err(ModelError(format!(
                "the model's architecture is `{arch}`; only `llama` is supported"
            )));
        }
        let n_embd = md_u32(ct, "llama.embedding_length")?;
        let n_head = md_u32(ct, "llama.attention.head_count")?;
        let n_kv_head = md_u32(ct, "llama.attention.head_count_kv").unwrap_or(n_head);
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 || n_embd % n_head != 0 {
            return Err(ModelError(format!(
                "inconsistent head counts {n_head}/{n_kv_head} for width {n_embd}"
            )));
        }
        let head_dim = n_embd / n_head;
        if head_dim % 2 != 0 {
            return Err(ModelError(format!("odd head width {head_dim}")));
        }
        let vocab = ct
            .tensor_infos
            .get("token_embd.weight")
            .and_then(|t| t.shape.dims().first().copied())
            .unwrap_or(0);
        Ok(Self {
            n_layer: md_u32(ct, "llama.block_count")?,
            n_embd,
            n_head,
            n_kv_head,
            head_dim,
            n_ff: md_u32(ct, "llama.feed_forward_length")?,
            context: md_u32(ct, "llama.context_length").unwrap_or(2048),
            rope_base: md_f32(ct, "llama.rope.freq_base").unwrap_or(10_000.0),
            rms_eps: md_f32(ct, "llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            vocab,
        })
    }
}

struct Loader<'a, R> {
    ct: &'a gguf_file::Content,
    reader: &'a mut R,
}

impl<R: Read + Seek> Loader<'_, R> {
    /// A matrix, read straight from the file when this crate has a kernel
    /// for its quantisation, converted to `Q8_0` by way of f32 otherwise.
    fn matrix(&mut self, name: &str) -> Result<QMatrix> {
        let info = self
            .ct
            .tensor_infos
            .get(name)
            .ok_or_else(|| ModelError(format!("the GGUF file has no tensor `{name}`")))?;
        let dims = info.shape.dims();
        let (rows, cols) = match dims {
            [r, c] => (*r, *c),
            _ => return Err(ModelError(format!("`{name}` is not a matrix: {dims:?}"))),
        };
        let dtype = info.ggml_dtype;
        if matches!(dtype, GgmlDType::Q8_0 | GgmlDType::Q4_1) {
            let len = rows * cols / dtype.block_size() * dtype.type_size();
            let mut bytes = vec![0u8; len];
            self.reader
                .seek(SeekFrom::Start(self.ct.tensor_data_offset + info.offset))
                .map_err(err)?;
            self.reader.read_exact(&mut bytes).map_err(err)?;
            let m = if dtype == GgmlDType::Q8_0 {
                QMatrix::from_q8_0(&bytes, rows, cols)
            } else {
                QMatrix::from_q4_1(&bytes, rows, cols)
            };
            return m.map_err(|e| ModelError(format!("`{name}`: {e}")));
        }
        let dense = self.dense(name)?;
        QMatrix::from_f32(&dense, rows, cols).map_err(|e| ModelError(format!("`{name}`: {e}")))
    }

    fn dense(&mut self, name: &str) -> Result<Vec<f32>> {
        self.ct
            .tensor(self.reader, name, &Device::Cpu)
            .and_then(|t| t.dequantize(&Device::Cpu))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| ModelError(format!("`{name}`: {e}")))
    }

    fn stacked(&mut self, names: &[String]) -> Result<QMatrix> {
        let parts = names
            .iter()
            .map(|n| self.matrix(n))
            .collect::<Result<Vec<_>>>()?;
        QMatrix::stack(parts).map_err(err)
    }
}

impl Weights {
    pub fn load<R: Read + Seek>(ct: &gguf_file::Content, reader: &mut R) -> Result<Self> {
        let hyper = Hyper::read(ct)?;
        let mut l = Loader { ct, reader };
        let embedding = l.matrix("token_embd.weight")?;
        let output = if ct.tensor_infos.contains_key("output.weight") {
            Some(l.matrix("output.weight")?)
        } else {
            None
        };
        let norm = l.dense("output_norm.weight")?;
        let mut layers = Vec::with_capacity(hyper.n_layer);
        for i in 0..hyper.n_layer {
            let p = format!("blk.{i}");
            let names = |parts: &[&str]| -> Vec<String> {
                parts.iter().map(|s| format!("{p}.{s}.weight")).collect()
            };
            let layer = Layer {
                attn_norm: l.dense(&format!("{p}.attn_norm.weight"))?,
                qkv: l.stacked(&names(&["attn_q", "attn_k", "attn_v"]))?,
                wo: l.matrix(&format!("{p}.attn_output.weight"))?,
                ffn_norm: l.dense(&format!("{p}.ffn_norm.weight"))?,
                gate_up: l.stacked(&names(&["ffn_gate", "ffn_up"]))?,
                down: l.matrix(&format!("{p}.ffn_down.weight"))?,
            };
            let kv = hyper.n_kv_head * hyper.head_dim;
            let shapes_ok = layer.qkv.rows == hyper.n_embd + 2 * kv
                && layer.qkv.cols == hyper.n_embd
                && layer.wo.rows == hyper.n_embd
                && layer.gate_up.rows == 2 * hyper.n_ff
                && layer.down.rows == hyper.n_embd
                && layer.down.cols == hyper.n_ff
                && layer.attn_norm.len() == hyper.n_embd
                && layer.ffn_norm.len() == hyper.n_embd;
            if !shapes_ok {
                return Err(ModelError(format!(
                    "layer {i}'s tensors do not match the metadata"
                )));
            }
            layers.push(layer);
        }
        let half = hyper.head_dim / 2;
        let mut cos = Vec::with_capacity(hyper.context * half);
        let mut sin = Vec::with_capacity(hyper.context * half);
        for pos in 0..hyper.context {
            for i in 0..half {
                let theta = hyper
                    .rope_base
                    .powf(-2.0 * i as f32 / hyper.head_dim as f32);
                let angle = pos as f32 * theta;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok(Self {
            hyper,
            embedding,
            output,
            layers,
            norm,
            cos,
            sin,
        })
    }

    /// Runs `tokens` (the next ones of the sequence) through the network
    /// and returns the logits after the last of them.
    pub fn forward(&self, tokens: &[u32], cache: &mut Cache) -> Result<Vec<f32>> {
        let h = &self.hyper;
        let (t_len, e) = (tokens.len(), h.n_embd);
        let pos = cache.len;
        if t_len == 0 {
            return Err(ModelError("nothing to run".into()));
        }
        if pos + t_len > h.context {
            return Err(ModelError(format!(
                "the sequence exceeds the model's context of {} tokens",
                h.context
            )));
        }
        let kv_w = h.n_kv_head * h.head_dim;
        let qkv_w = e + 2 * kv_w;
        let mut x = vec![0f32; t_len * e];
        for (row, &tok) in x.chunks_exact_mut(e).zip(tokens) {
            if tok as usize >= h.vocab {
                return Err(ModelError(format!("token {tok} is outside the vocabulary")));
            }
            self.embedding.row(tok as usize, row);
        }
        let mut normed = vec![0f32; t_len * e];
        let mut acts = QActs::default();
        let mut scratch = Vec::new();
        // Products run on the quantised weights through the integer
        // kernels; a prompt chunk with a matrix that has no integer GEMM
        // (`Q8_0`) goes through the dense f32 GEMM instead.
        let dense = t_len >= DENSE_ROWS;
        let mut product = |w: &QMatrix, x: &[f32], cols: usize, out: &mut [f32]| {
            if dense && !w.packed() {
                w.matmul_dense(x, t_len, out, &mut scratch);
            } else {
                acts.quantize(x, t_len, cols);
                w.matmul(&acts, out);
            }
        };
        let mut qkv = vec![0f32; t_len * qkv_w];
        let mut attn = vec![0f32; t_len * e];
        let mut proj = vec![0f32; t_len * e];
        let mut gu = vec![0f32; t_len * 2 * h.n_ff];
        let mut mid = vec![0f32; t_len * h.n_ff];
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, h.rms_eps, &mut normed);
            product(&layer.qkv, &normed, e, &mut qkv);
            for (t, row) in qkv.chunks_exact_mut(qkv_w).enumerate() {
                let (q, kv) = row.split_at_mut(e);
                self.rope(q, pos + t);
                self.rope(&mut kv[..kv_w], pos + t);
                cache.k[li].extend_from_slice(&kv[..kv_w]);
                cache.v[li].extend_from_slice(&kv[kv_w..]);
            }
            self.attention(&qkv, &cache.k[li], &cache.v[li], pos, &mut attn);
            product(&layer.wo, &attn, e, &mut proj);
            add(&mut x, &proj);
            rms_norm(&x, &layer.ffn_norm, h.rms_eps, &mut normed);
            product(&layer.gate_up, &normed, e, &mut gu);
            for (m, g) in mid
                .chunks_exact_mut(h.n_ff)
                .zip(gu.chunks_exact(2 * h.n_ff))
            {
                let (gate, up) = g.split_at(h.n_ff);
                for ((o, a), b) in m.iter_mut().zip(gate).zip(up) {
                    *o = a / (1.0 + (-a).exp()) * b;
                }
            }
            product(&layer.down, &mid, h.n_ff, &mut proj);
            add(&mut x, &proj);
        }
        cache.len += t_len;
        let last = &x[(t_len - 1) * e..];
        let mut out_norm = vec![0f32; e];
        rms_norm(last, &self.norm, h.rms_eps, &mut out_norm);
        let mut acts = QActs::default();
        acts.quantize(&out_norm, 1, e);
        let head = self.output.as_ref().unwrap_or(&self.embedding);
        let mut logits = vec![0f32; head.rows];
        head.matmul(&acts, &mut logits);
        Ok(logits)
    }

    /// Rotates each head's adjacent pairs by the position's angles.
    fn rope(&self, x: &mut [f32], pos: usize) {
        let half = self.hyper.head_dim / 2;
        let cos = &self.cos[pos * half..][..half];
        let sin = &self.sin[pos * half..][..half];
        for head in x.chunks_exact_mut(self.hyper.head_dim) {
            for (pair, (c, s)) in head.chunks_exact_mut(2).zip(cos.iter().zip(sin)) {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * c - b * s;
                pair[1] = a * s + b * c;
            }
        }
    }

    /// Causal grouped-query attention of the new tokens (their queries in
    /// `qkv`) over the cached keys and values; writes `t × n_embd`.
    fn attention(&self, qkv: &[f32], k: &[f32], v: &[f32], pos: usize, out: &mut [f32]) {
        let h = &self.hyper;
        let (e, d) = (h.n_embd, h.head_dim);
        let kv_w = h.n_kv_head * d;
        let qkv_w = e + 2 * kv_w;
        let rep = h.n_head / h.n_kv_head;
        let scale = 1.0 / (d as f32).sqrt();
        let one = |t: usize, o: &mut [f32]| {
            let q_row = &qkv[t * qkv_w..][..e];
            let visible = pos + t + 1;
            let mut scores = vec![0f32; visible];
            for (head, (q, o)) in q_row.chunks_exact(d).zip(o.chunks_exact_mut(d)).enumerate() {
                let kvh = head / rep;
                for (s, score) in scores.iter_mut().enumerate() {
                    let key = &k[s * kv_w + kvh * d..][..d];
                    *score = dot(q, key) * scale;
                }
                softmax(&mut scores);
                o.fill(0.0);
                for (s, w) in scores.iter().enumerate() {
                    let val = &v[s * kv_w + kvh * d..][..d];
                    for (acc, x) in o.iter_mut().zip(val) {
                        *acc += w * x;
                    }
                }
            }
        };
        let t_len = out.len() / e;
        if t_len == 1 {
            one(0, out);
            return;
        }
        // A prompt chunk: per head, scores = Q·Kᵀ and out = softmax(scores)·V
        // as two dense products, heads in parallel.
        let kv_len = pos + t_len;
        let heads: Vec<Vec<f32>> = (0..h.n_head)
            .into_par_iter()
            .map(|head| {
                let kvh = head / rep;
                let q = Strided {
                    data: &qkv[head * d..],
                    row: qkv_w,
                    col: 1,
                };
                let keys_t = Strided {
                    data: &k[kvh * d..],
                    row: 1,
                    col: kv_w,
                };
                let mut scores = vec![0f32; t_len * kv_len];
                gemm_f32(t_len, kv_len, d, q, keys_t, scale, &mut scores, false);
                for (t, row) in scores.chunks_exact_mut(kv_len).enumerate() {
                    let (visible, hidden) = row.split_at_mut(pos + t + 1);
                    softmax(visible);
                    hidden.fill(0.0);
                }
                let values = Strided {
                    data: &v[kvh * d..],
                    row: kv_w,
                    col: 1,
                };
                let mut o = vec![0f32; t_len * d];
                let p = Strided::rows(&scores, kv_len);
                gemm_f32(t_len, d, kv_len, p, values, 1.0, &mut o, false);
                o
            })
            .collect();
        for (head, o) in heads.iter().enumerate() {
            for (dst, src) in out.chunks_exact_mut(e).zip(o.chunks_exact(d)) {
                dst[head * d..][..d].copy_from_slice(src);
            }
        }
    }
}

/// Tokens at or above which a forward pass multiplies `Q8_0` weights
/// dequantised, by a dense GEMM.
const DENSE_ROWS: usize = 16;

fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = w.len();
    for (src, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let mean = src.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let r = 1.0 / (mean + eps).sqrt();
        for ((o, v), g) in dst.iter_mut().zip(src).zip(w) {
            *o = v * r * g;
        }
    }
}

fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        total += *v;
    }
    let inv = 1.0 / total;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Dot product in eight independent lanes (which the compiler turns into
/// one vector register), then summed.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Index of the largest logit.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, v) in logits.iter().enumerate() {
        if *v > logits[best] {
            best = i;
        }
    }
    best as u32
}
