//! Team and file names become paths only through here: no traversal, no separators, no
//! surprises on any filesystem or S3 key.

use crate::{Error, Result};

/// A file name for a team (`검색` stays `검색`; `../x` becomes `x`; `a/b` becomes `a_b`).
pub fn sanitise_file_stem(name: &str) -> String {
    let cleaned: String = name
        .trim()
        .chars()
        .map(|c| if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    let cleaned = cleaned.trim_matches('.').to_string();
    let cleaned = if cleaned.is_empty() { "_".to_string() } else { cleaned };
    // Keep names short enough for every filesystem (255 bytes) with room for an extension.
    let mut out = String::new();
    for c in cleaned.chars() {
        if out.len() + c.len_utf8() > 200 {
            break;
        }
        out.push(c);
    }
    out
}

/// Checks a relative output path: plain components only.
pub fn safe_relative_path(name: &str) -> Result<std::path::PathBuf> {
    let ok = !name.is_empty()
        && name.split('/').all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'));
    if ok {
        Ok(name.split('/').collect())
    } else {
        Err(Error::UnsafeName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape() {
        assert_eq!(sanitise_file_stem("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(sanitise_file_stem("검색"), "검색");
        assert_eq!(sanitise_file_stem("  "), "_");
        assert_eq!(sanitise_file_stem(".."), "_");
        assert!(safe_relative_path("../x").is_err());
        assert!(safe_relative_path("/abs").is_err());
        assert!(safe_relative_path("teams/a.csv").is_ok());
    }
}
