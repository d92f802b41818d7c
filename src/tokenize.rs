//! WordPiece tokenisation exactly as HF's `BertTokenizer(Fast)`: [CLS] a [SEP] (b [SEP]),
//! token_type_ids, longest-first truncation to a maximum length, and dynamic padding per batch.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    EncodeInput, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

/// One tokenised example, unpadded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Encoded {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
}

/// A padded batch in row-major `[batch, seq_len]` layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub batch_size: usize,
    pub seq_len: usize,
    pub input_ids: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding
    pub attention_mask: Vec<i64>,
}

impl Batch {
    /// Pad to the longest member of the batch (`pad_to = None`) or to a fixed length.
    pub fn collate(items: &[&Encoded], pad_id: u32, pad_to: Option<usize>) -> Batch {
        let longest = items.iter().map(|e| e.input_ids.len()).max().unwrap_or(0);
        let seq_len = pad_to.unwrap_or(longest).max(longest);
        let n = items.len() * seq_len;
        let mut b = Batch {
            batch_size: items.len(),
            seq_len,
            input_ids: vec![pad_id as i64; n],
            token_type_ids: vec![0; n],
            attention_mask: vec![0; n],
        };
        for (row, e) in items.iter().enumerate() {
            let o = row * seq_len;
            for (j, (&id, &tt)) in e.input_ids.iter().zip(&e.token_type_ids).enumerate() {
                b.input_ids[o + j] = id as i64;
                b.token_type_ids[o + j] = tt as i64;
                b.attention_mask[o + j] = 1;
            }
        }
        b
    }
}

/// A BERT tokenizer with the harness's truncation settings (no padding: batches pad themselves).
pub struct BertTokenizer {
    inner: Tokenizer,
    pub max_length: usize,
    pub pad_id: u32,
    /// where it came from: `tokenizer.json` or `vocab.txt`
    pub source: String,
}

impl BertTokenizer {
    /// Load from an HF model folder: `tokenizer.json` if present, else `vocab.txt` with the
    /// `do_lower_case` of `tokenizer_config.json` (default true, as HF's BertTokenizer).
    pub fn from_model_dir(dir: &Path, max_length: usize) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let (mut inner, source) = if json.is_file() {
            let t = Tokenizer::from_file(&json).map_err(|e| anyhow!("{}: {e}", json.display()))?;
            (t, json.display().to_string())
        } else if dir.join("vocab.txt").is_file() {
            let vocab = dir.join("vocab.txt");
            (
                Self::from_vocab(&vocab, lower_case(dir)?)?,
                vocab.display().to_string(),
            )
        } else if dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file() {
            (
                Self::from_bpe(&dir.join("vocab.json"), &dir.join("merges.txt"))?,
                dir.join("vocab.json").display().to_string(),
            )
        } else {
            anyhow::bail!(
                "{}: neither tokenizer.json nor vocab.txt (WordPiece) nor vocab.json + merges.txt \
                 (byte-level BPE) found; the model folder must hold one of them",
                dir.display()
            );
        };
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| anyhow!("{e}"))?;
        inner.with_padding(None);
        let pad_id = ["[PAD]", "<pad>"]
            .iter()
            .find_map(|t| inner.token_to_id(t))
            .unwrap_or(0);
        Ok(BertTokenizer {
            inner,
            max_length,
            pad_id,
            source,
        })
    }

    /// The WordPiece pipeline HF's slow `BertTokenizer` runs, built from `vocab.txt`.
    pub fn from_vocab(vocab: &Path, lowercase: bool) -> Result<Tokenizer> {
        let path = vocab
            .to_str()
            .ok_or_else(|| anyhow!("non-UTF-8 path {}", vocab.display()))?;
        let wp = WordPiece::from_file(path)
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| anyhow!("{}: {e}", vocab.display()))?;
        let id = |t: &str| wp_id(&wp, t, vocab);
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        let mut t = Tokenizer::new(wp);
        t.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .map_err(|e| anyhow!("{e}"))?;
        t.with_pre_tokenizer(Some(BertPreTokenizer));
        t.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        t.with_decoder(Some(tokenizers::decoders::wordpiece::WordPiece::default()));
        Ok(t)
    }

    /// The byte-level BPE pipeline of HF's `RobertaTokenizer`, built from `vocab.json` and
    /// `merges.txt`: `<s> A </s></s> B </s>` for pairs, no prefix space.
    pub fn from_bpe(vocab: &Path, merges: &Path) -> Result<Tokenizer> {
        use tokenizers::models::bpe::BPE;
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::processors::roberta::RobertaProcessing;
        let path = |p: &Path| {
            p.to_str()
                .ok_or_else(|| anyhow!("non-UTF-8 path {}", p.display()))
                .map(str::to_string)
        };
        let bpe = BPE::from_file(&path(vocab)?, &path(merges)?)
            .build()
            .map_err(|e| anyhow!("{}: {e}", vocab.display()))?;
        let id = |t: &str| {
            bpe.get_vocab()
                .get(t)
                .copied()
                .ok_or_else(|| anyhow!("{}: the vocabulary has no `{t}` token", vocab.display()))
        };
        let (cls, sep) = (id("<s>")?, id("</s>")?);
        let mut t = Tokenizer::new(bpe);
        t.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
        t.with_post_processor(Some(
            RobertaProcessing::new(("</s>".into(), sep), ("<s>".into(), cls))
                .trim_offsets(true)
                .add_prefix_space(false),
        ));
        t.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
        Ok(t)
    }

    /// Tokenise a single sentence or a pair, with [CLS]/[SEP] and truncation.
    pub fn encode(&self, a: &str, b: Option<&str>) -> Result<Encoded> {
        let input: EncodeInput = match b {
            Some(b) => (a, b).into(),
            None => a.into(),
        };
        let e = self
            .inner
            .encode(input, true)
            .map_err(|e| anyhow!("tokenizing {a:?}: {e}"))?;
        Ok(Encoded {
            input_ids: e.get_ids().to_vec(),
            token_type_ids: e.get_type_ids().to_vec(),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// A tokenizer for (question, context) pairs that splits a long context into overlapping
    /// windows of `max_length` tokens, `stride` context tokens shared by neighbours (HF's
    /// `truncation="only_second", return_overflowing_tokens=True, stride=…`).
    pub fn windows(&self, stride: usize) -> Result<WindowTokenizer> {
        let mut inner = self.inner.clone();
        // windows are cut from the whole encoding (see `encode_windows`)
        inner.with_truncation(None).map_err(|e| anyhow!("{e}"))?;
        Ok(WindowTokenizer {
            inner,
            max_length: self.max_length,
            stride,
            pad_id: self.pad_id,
        })
    }
}

/// One window of a (question, context) pair.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowEncoding {
    pub enc: Encoded,
    /// character offsets of every token into its own sequence ((0, 0) for special tokens)
    pub offsets: Vec<(usize, usize)>,
    /// 0 for question tokens, 1 for context tokens, None for special tokens
    pub sequence_ids: Vec<Option<usize>>,
}

/// See [`BertTokenizer::windows`].
pub struct WindowTokenizer {
    inner: Tokenizer,
    pub max_length: usize,
    pub stride: usize,
    pub pad_id: u32,
}

impl WindowTokenizer {
    /// Every window of `question` + `context`, in context order, with character offsets: what
    /// HF's fast tokenizer returns as the encoding and its overflowing encodings. The windows are
    /// cut from the whole pair's encoding as `Encoding::truncate` cuts the context (ranges of
    /// `max_length − question − specials` tokens, each starting `stride` tokens before the
    /// previous one ended), each with the question and the special tokens around it. (tokenizers
    /// 0.23.2's own overflow stops tokenising at `max_length` tokens and so loses every window
    /// after the second: huggingface/tokenizers#2091.)
    pub fn encode_windows(&self, question: &str, context: &str) -> Result<Vec<WindowEncoding>> {
        let e = self
            .inner
            .encode_char_offsets((question, context), true)
            .map_err(|e| anyhow!("{e} (question {question:?})"))?;
        let seq = e.get_sequence_ids();
        let whole = |range: std::ops::Range<usize>| -> Vec<usize> { range.collect() };
        let Some(first) = seq.iter().position(|s| *s == Some(1)) else {
            bail!("question {question:?}: the context has no tokens");
        };
        let last = seq
            .iter()
            .rposition(|s| *s == Some(1))
            .expect("first exists");
        let n = e.get_ids().len();
        let around = n - (last + 1 - first);
        let room = self.max_length.checked_sub(around).filter(|&r| r > 0).ok_or_else(|| {
            anyhow!(
                "question {question:?}: its {around} tokens with the special tokens leave no room for \
                 the context in windows of {} tokens; raise max_length",
                self.max_length
            )
        })?;
        let context_len = last + 1 - first;
        let ranges: Vec<(usize, usize)> = if context_len <= room {
            vec![(0, context_len)]
        } else {
            if self.stride >= room {
                bail!(
                    "question {question:?}: a stride of {} tokens does not fit windows with room for {room} \
                     context tokens; lower the stride or raise max_length",
                    self.stride
                );
            }
            let mut v = Vec::new();
            let mut start = 0;
            loop {
                let stop = (start + room).min(context_len);
                v.push((start, stop));
                if stop == context_len {
                    break;
                }
                start += room - self.stride;
            }
            v
        };
        let pick = |idx: &[usize]| WindowEncoding {
            enc: Encoded {
                input_ids: idx.iter().map(|&i| e.get_ids()[i]).collect(),
                token_type_ids: idx.iter().map(|&i| e.get_type_ids()[i]).collect(),
            },
            offsets: idx.iter().map(|&i| e.get_offsets()[i]).collect(),
            sequence_ids: idx.iter().map(|&i| seq[i]).collect(),
        };
        Ok(ranges
            .into_iter()
            .map(|(a, b)| {
                let mut idx = whole(0..first);
                idx.extend(first + a..first + b);
                idx.extend(last + 1..n);
                pick(&idx)
            })
            .collect())
    }
}

fn wp_id(wp: &WordPiece, tok: &str, vocab: &Path) -> Result<u32> {
    use tokenizers::Model;
    wp.token_to_id(tok)
        .ok_or_else(|| anyhow!("{}: vocabulary has no {tok} token", vocab.display()))
}

fn lower_case(dir: &Path) -> Result<bool> {
    let cfg = dir.join("tokenizer_config.json");
    if !cfg.is_file() {
        return Ok(true);
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg)?)
        .with_context(|| format!("{}: not valid JSON", cfg.display()))?;
    Ok(v.get("do_lower_case")
        .and_then(|x| x.as_bool())
        .unwrap_or(true))
}
