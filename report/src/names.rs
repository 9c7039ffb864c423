//! Team and file names become paths only through here: no traversal, no separators, no
//! surprises on any filesystem or S3 key.

use crate::{Error, Result};

/// A file name for a team: the domain's [`finops_allocate::rules::file_stem`], which validation
/// keeps unique across the rule set's teams.
pub use finops_allocate::rules::file_stem as sanitise_file_stem;

/// Checks a relative output path: plain components only.
pub fn safe_relative_path(name: &str) -> Result<std::path::PathBuf> {
    let ok = !name.is_empty() && name.split('/').all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'));
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
