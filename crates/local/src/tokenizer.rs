//! Byte-level BPE built from a GGUF file's own vocabulary
//! (`tokenizer.ggml.tokens`, `merges`, `token_type`), so a model needs no
//! separate tokenizer file.
//!
//! Encoding follows the GPT-2 scheme that `tokenizer.ggml.model = "gpt2"`
//! names: control tokens (`<|im_start|>`) are matched literally first; the
//! rest is split by the pre-tokenizer (digits one by one for the `smollm`
//! family, then the GPT-2 pattern), each piece's bytes are mapped to the
//! printable stand-ins of GPT-2's byte alphabet, and merges are applied by
//! rank.

use regex::Regex;
use std::collections::HashMap;

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// GPT-2's pre-tokenizer pattern. Its last alternative, `\s+(?!\S)|\s+`,
/// needs a look-ahead the `regex` crate lacks: it is written as a captured
/// `(\s+)` and [`Tokenizer::split`] gives back a run's last character when
/// a non-space follows it.
const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|(\s+)";

/// The Llama 3 pattern (also `smaug-bpe`), written the same way.
const LLAMA3_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|(\s+)";

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("the GGUF tokenizer is `{0}`; only byte-level BPE (`gpt2`) is supported")]
    Unsupported(String),
    #[error("the GGUF vocabulary is malformed: {0}")]
    Malformed(String),
}

pub struct Tokenizer {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    ranks: HashMap<(u32, u32), (u32, u32)>,
    /// Control and user-defined tokens matched literally, in one pattern
    /// (longest first, so the longest wins at a position); `None` when the
    /// vocabulary has none.
    specials: Option<Regex>,
    special_ids: Vec<bool>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
    pattern: Regex,
    split_digits: bool,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
}

/// GPT-2's reversible map from bytes to printable characters: printable
/// Latin-1 bytes stand for themselves, the rest are shifted past U+0100.
fn byte_alphabet() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        map[usize::from(b)] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or('\u{FFFD}');
            next += 1;
            c
        };
    }
    map
}

/// What [`Tokenizer::from_vocab`] needs from the GGUF metadata.
pub struct Vocab {
    pub model: String,
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
}

impl Tokenizer {
    pub fn from_vocab(v: Vocab) -> Result<Self, TokenizerError> {
        if v.model != "gpt2" {
            return Err(TokenizerError::Unsupported(v.model));
        }
        let n = u32::try_from(v.tokens.len())
            .map_err(|_| TokenizerError::Malformed("too many tokens".into()))?;
        let ids: HashMap<String, u32> = v.tokens.iter().cloned().zip(0..n).collect();
        let mut ranks = HashMap::with_capacity(v.merges.len());
        for (rank, merge) in v.merges.iter().enumerate() {
            let (a, b) = merge
                .split_once(' ')
                .ok_or_else(|| TokenizerError::Malformed(format!("merge `{merge}`")))?;
            let (Some(&ia), Some(&ib), Some(&merged)) =
                (ids.get(a), ids.get(b), ids.get(&format!("{a}{b}")))
            else {
                return Err(TokenizerError::Malformed(format!(
                    "merge `{merge}` names an unknown token"
                )));
            };
            ranks.entry((ia, ib)).or_insert((rank as u32, merged));
        }
        let mut special_ids = vec![false; v.tokens.len()];
        let mut specials = Vec::new();
        for (i, t) in v.token_types.iter().enumerate() {
            if matches!(*t, TYPE_CONTROL | TYPE_USER_DEFINED) {
                if let Some(text) = v.tokens.get(i) {
                    special_ids[i] = *t == TYPE_CONTROL;
                    specials.push(regex::escape(text));
                }
            }
        }
        specials.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let specials = if specials.is_empty() {
            None
        } else {
            Some(
                Regex::new(&specials.join("|"))
                    .map_err(|e| TokenizerError::Malformed(e.to_string()))?,
            )
        };
        let byte_to_char = byte_alphabet();
        let char_to_byte = (0..=255u8)
            .map(|b| (byte_to_char[usize::from(b)], b))
            .collect();
        // `tokenizer.ggml.pre` names the pre-tokenizer (llama.cpp's names);
        // `smollm` isolates every digit before the GPT-2 pattern.
        let (pattern, split_digits) = match v.pre.as_deref() {
            Some("llama3" | "llama-bpe" | "smaug-bpe") => (LLAMA3_PATTERN, false),
            Some("smollm") => (GPT2_PATTERN, true),
            _ => (GPT2_PATTERN, false),
        };
        let pattern = Regex::new(pattern).map_err(|e| TokenizerError::Malformed(e.to_string()))?;
        Ok(Self {
            tokens: v.tokens,
            ids,
            ranks,
            specials,
            special_ids,
            byte_to_char,
            char_to_byte,
            pattern,
            split_digits,
            bos: v.bos,
            eos: v.eos,
            add_bos: v.add_bos,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The id of a token given by its text (`<|im_end|>`).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// Whether `id` is a control token (never shown as text).
    pub fn is_control(&self, id: u32) -> bool {
        self.special_ids.get(id as usize).copied().unwrap_or(false)
    }

    /// Token ids for `text`; control tokens written in the text are
    /// recognised as such.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if self.add_bos {
            out.extend(self.bos);
        }
        // One pass over the text: plain runs between special tokens.
        let mut start = 0;
        for m in self.specials.iter().flat_map(|re| re.find_iter(text)) {
            if let Some(&id) = self.ids.get(m.as_str()) {
                self.encode_plain(&text[start..m.start()], &mut out);
                out.push(id);
                start = m.end();
            }
        }
        self.encode_plain(&text[start..], &mut out);
        out
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        if !self.split_digits {
            self.split(text, out);
            return;
        }
        let mut start = 0;
        for (i, c) in text.char_indices() {
            if c.is_numeric() {
                self.split(&text[start..i], out);
                self.split(&text[i..i + c.len_utf8()], out);
                start = i + c.len_utf8();
            }
        }
        self.split(&text[start..], out);
    }

    /// GPT-2's pattern, including `\s+(?!\S)`: a run of whitespace followed
    /// by a non-space gives up its last character to the next piece.
    fn split(&self, text: &str, out: &mut Vec<u32>) {
        let mut pos = 0;
        while pos < text.len() {
            let Some(caps) = self.pattern.captures_at(text, pos) else {
                break;
            };
            let Some(m) = caps.get(0) else {
                break;
            };
            let mut end = m.end();
            if let Some(run) = caps.get(1) {
                let last = run.as_str().chars().next_back().map_or(0, char::len_utf8);
                if end < text.len() && run.len() > last {
                    end -= last;
                }
            }
            self.bpe(&text[m.start()..end], out);
            pos = end;
        }
    }

    fn bpe(&self, piece: &str, out: &mut Vec<u32>) {
        let mut word: Vec<u32> = Vec::with_capacity(piece.len());
        let mut buf = [0u8; 4];
        for b in piece.bytes() {
            let c = self.byte_to_char[usize::from(b)];
            match self.ids.get(c.encode_utf8(&mut buf) as &str) {
                Some(&id) => word.push(id),
                // A vocabulary without every byte: the byte is dropped
                // rather than invented.
                None => continue,
            }
        }
        loop {
            let best = word
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| self.ranks.get(&(w[0], w[1])).map(|&(r, m)| (r, i, m)))
                .min();
            let Some((rank, _, merged)) = best else {
                break;
            };
            // Merge every occurrence of this pair, left to right.
            let mut next = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len()
                    && self.ranks.get(&(word[i], word[i + 1])).map(|r| r.0) == Some(rank)
                {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(word[i]);
                    i += 1;
                }
            }
            word = next;
        }
        out.extend(word);
    }

    /// A token's text as written in the vocabulary (control tokens included).
    pub fn decode_raw(&self, id: u32) -> String {
        if self.is_control(id) {
            return self.tokens.get(id as usize).cloned().unwrap_or_default();
        }
        self.decode(&[id])
    }

    /// The bytes a token stands for; control tokens give none.
    pub fn token_bytes(&self, id: u32, out: &mut Vec<u8>) {
        if self.is_control(id) {
            return;
        }
        let Some(text) = self.tokens.get(id as usize) else {
            return;
        };
        for c in text.chars() {
            match self.char_to_byte.get(&c) {
                Some(&b) => out.push(b),
                None => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            self.token_bytes(id, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Turns a stream of token bytes into text, holding back a UTF-8 sequence
/// split across tokens until it is complete.
#[derive(Default)]
pub struct TextStream {
    pending: Vec<u8>,
}

impl TextStream {
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        tokenizer.token_bytes(id, &mut self.pending);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // Bytes that can never become valid: replace them and go on.
            Err(_) => {
                let text = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                return text;
            }
        };
        let rest = self.pending.split_off(valid);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        text
    }

    /// Whatever is left at the end, with incomplete sequences replaced.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}
