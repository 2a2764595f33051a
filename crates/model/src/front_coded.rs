//! Sequences of strings stored front-coded: each string as the length of the prefix it
//! shares with the string before it, and the rest. A dataset's URLs and file names
//! share most of their bytes with their neighbours, so its stored state shrinks to a
//! fraction and is read and written in as little. Use with `#[serde(with = "...")]`.

use std::borrow::Cow;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// The length in bytes of the longest common prefix of `a` and `b` that ends on a
/// character boundary of both.
fn shared_prefix(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let common = a.len().min(b.len());
    // Eight bytes at a time: the common prefixes are long.
    let mut n = 0;
    while n + 8 <= common {
        let word = |s: &[u8]| u64::from_le_bytes(s[n..n + 8].try_into().unwrap_or([0; 8]));
        let diff = word(a) ^ word(b);
        if diff != 0 {
            n += (diff.trailing_zeros() / 8) as usize;
            break;
        }
        n += 8;
    }
    if n + 8 > common {
        n += a[n..common]
            .iter()
            .zip(&b[n..common])
            .take_while(|(x, y)| x == y)
            .count();
    }
    while n > 0 && n < b.len() && (b[n] & 0xC0) == 0x80 {
        n -= 1;
    }
    n
}

/// The stored form: per string the bytes it shares with the string before it (`NONE`
/// for an absent one) and the length of its own tail; the tails in one text.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored<'a> {
    shared: Vec<u32>,
    tail_lens: Vec<u32>,
    #[serde(borrow)]
    tails: Cow<'a, str>,
}

const NONE: u32 = u32::MAX;

fn store<'v>(values: impl ExactSizeIterator<Item = Option<&'v str>>) -> Stored<'static> {
    let mut shared = Vec::with_capacity(values.len());
    let mut tail_lens = Vec::with_capacity(values.len());
    let mut tails = String::with_capacity(values.len() * 16);
    let mut previous = "";
    for v in values {
        match v {
            Some(v) => {
                let n = shared_prefix(previous, v);
                shared.push(n as u32);
                tail_lens.push((v.len() - n) as u32);
                tails.push_str(&v[n..]);
                previous = v;
            }
            None => {
                shared.push(NONE);
                tail_lens.push(0);
            }
        }
    }
    Stored {
        shared,
        tail_lens,
        tails: Cow::Owned(tails),
    }
}

/// Rebuilds the strings, refusing what no front-coded sequence can hold.
fn restore<E: de::Error>(stored: Stored<'_>) -> Result<Vec<Option<String>>, E> {
    if stored.shared.len() != stored.tail_lens.len() {
        return Err(E::custom(
            "front-coded strings: prefix and tail counts differ",
        ));
    }
    let mut out: Vec<Option<String>> = Vec::with_capacity(stored.shared.len());
    let mut previous: Option<usize> = None;
    let mut at = 0usize;
    for (&shared, &len) in stored.shared.iter().zip(&stored.tail_lens) {
        if shared == NONE {
            out.push(None);
            continue;
        }
        let before = previous.and_then(|k| out[k].as_deref()).unwrap_or("");
        let head = before.get(..shared as usize).ok_or_else(|| {
            E::custom(format!(
                "front-coded string shares {shared} bytes with a shorter one"
            ))
        })?;
        let tail = at
            .checked_add(len as usize)
            .and_then(|end| stored.tails.get(at..end))
            .ok_or_else(|| E::custom("front-coded string: tail out of bounds"))?;
        at += len as usize;
        let mut s = String::with_capacity(head.len() + tail.len());
        s.push_str(head);
        s.push_str(tail);
        previous = Some(out.len());
        out.push(Some(s));
    }
    Ok(out)
}

/// `Vec<String>` front-coded.
pub mod strings {
    use super::*;

    pub fn serialize<S: Serializer, T: AsRef<str>>(values: &[T], s: S) -> Result<S::Ok, S::Error> {
        store(values.iter().map(|v| Some(v.as_ref()))).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        restore(Stored::deserialize(d)?)?
            .into_iter()
            .map(|v| v.ok_or_else(|| de::Error::custom("front-coded strings: a string is absent")))
            .collect()
    }
}

/// `Vec<Option<String>>` front-coded, each present string against the present one before.
pub mod optional_strings {
    use super::*;

    pub fn serialize<S: Serializer, T: AsRef<str>>(
        values: &[Option<T>],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        store(values.iter().map(|v| v.as_ref().map(AsRef::as_ref))).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Option<String>>, D::Error> {
        restore(Stored::deserialize(d)?)
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Both {
        #[serde(with = "super::strings")]
        s: Vec<String>,
        #[serde(with = "super::optional_strings")]
        o: Vec<Option<String>>,
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn round_trips_and_shrinks_shared_prefixes() {
        let urls: Vec<String> = (0..100)
            .map(|k| format!("s3://archive/CMIP6/CMIP/ZS/ZS-1/historical/r1i1p1f1/Amon/tas/gn/v20200101/tas_{k:04}.nc"))
            .collect();
        let value = Both {
            s: urls.clone(),
            o: vec![
                None,
                Some("2001-01".into()),
                None,
                Some("2001-02".into()),
                Some("é".into()),
                Some("éa".into()),
            ],
        };
        let bytes = postcard::to_stdvec(&value).unwrap();
        assert_eq!(postcard::from_bytes::<Both>(&bytes).unwrap(), value);
        let plain: usize = urls.iter().map(|u| u.len() + 1).sum();
        assert!(
            bytes.len() * 5 < plain,
            "{} bytes front-coded against {plain} plain",
            bytes.len()
        );
        // Through a format that hands out owned strings as well.
        let json = serde_json::to_string(&value).unwrap();
        assert_eq!(serde_json::from_str::<Both>(&json).unwrap(), value);
    }

    #[test]
    fn shared_prefixes_are_measured_exactly() {
        for (a, b, n) in [
            ("", "abc", 0),
            ("abcdefghijklmnop", "abcdefghijklmnoq", 15),
            ("abcdefghijklmnop", "abcdefghijklmnop", 16),
            ("abcdefgh", "abcdefghij", 8),
            ("abcdefghijkl", "abcdefgh", 8),
            ("x/aé", "x/aè", 3),
        ] {
            assert_eq!(super::shared_prefix(a, b), n, "{a} / {b}");
        }
    }

    #[test]
    fn multibyte_characters_are_not_split() {
        let value = Both {
            s: strings(&["aé", "aè", "a"]),
            o: vec![],
        };
        let bytes = postcard::to_stdvec(&value).unwrap();
        assert_eq!(postcard::from_bytes::<Both>(&bytes).unwrap(), value);
    }

    #[test]
    fn a_prefix_longer_than_the_string_before_is_refused() {
        let bad = serde_json::json!({
            "s": {"shared": [0, 5], "tail_lens": [2, 1], "tails": "abc"},
            "o": {"shared": [], "tail_lens": [], "tails": ""}
        });
        let err = serde_json::from_value::<Both>(bad).unwrap_err().to_string();
        assert!(err.contains("shares 5 bytes"), "{err}");
    }
}
