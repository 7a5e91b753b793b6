//! Validation of bucket names (S3's rules) and file paths.

/// Longest path accepted, in bytes (S3's key limit).
pub const MAX_PATH_LEN: usize = 1024;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The bucket name breaks S3's naming rules.
    #[error("invalid bucket name {name:?}: {why}")]
    Bucket {
        /// The name given.
        name: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// The path is not acceptable.
    #[error("invalid path {path:?}: {why}")]
    Path {
        /// The path given (cut to 80 characters).
        path: String,
        /// Which rule it breaks.
        why: &'static str,
    },
}

/// Checks a bucket name against S3's rules: 3–63 characters of lowercase
/// letters, digits, `.` and `-`, starting and ending with a letter or digit,
/// no `..`, not shaped like an IP address, no `xn--` prefix or `-s3alias`
/// suffix.
pub fn validate_bucket(name: &str) -> Result<(), NameError> {
    let err = |why| {
        Err(NameError::Bucket {
            name: name.chars().take(80).collect(),
            why,
        })
    };
    if name.len() < 3 || name.len() > 63 {
        return err("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
    {
        return err("only lowercase letters, digits, '.' and '-' are allowed");
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return err("must start and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return err("must not contain '..', '.-' or '-.'");
    }
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return err("must not be formatted as an IP address");
    }
    if name.starts_with("xn--") || name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
        return err("reserved prefix or suffix");
    }
    Ok(())
}

/// Checks a file path: non-empty, at most [`MAX_PATH_LEN`] bytes, no NUL,
/// no leading `/`, no `.` or `..` segment, no empty segment in the middle
/// (a trailing `/` is allowed: S3 tools create such "folder" keys).
pub fn validate_path(path: &str) -> Result<(), NameError> {
    let err = |why| {
        Err(NameError::Path {
            path: path.chars().take(80).collect(),
            why,
        })
    };
    if path.is_empty() {
        return err("must not be empty");
    }
    if path.len() > MAX_PATH_LEN {
        return err("longer than 1024 bytes");
    }
    if path.contains('\0') {
        return err("must not contain NUL");
    }
    if path.starts_with('/') {
        return err("must not start with '/'");
    }
    let body = path.strip_suffix('/').unwrap_or(path);
    for seg in body.split('/') {
        match seg {
            "" => return err("must not contain an empty segment ('//')"),
            "." | ".." => return err("must not contain '.' or '..' segments"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3() {
        for ok in ["abc", "my-bucket", "my.bucket.1", "a1b", &"a".repeat(63)] {
            assert!(validate_bucket(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "ABC",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "abc-s3alias",
            &"a".repeat(64),
            "a b",
            "",
        ] {
            assert!(validate_bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_checked() {
        for ok in [
            "a",
            "dir/file.txt",
            "dir/",
            "weird name ü/😀",
            &"x".repeat(1024),
        ] {
            assert!(validate_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/abs",
            "a/../b",
            "..",
            "./a",
            "a//b",
            "a\0b",
            &"x".repeat(1025),
        ] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
    }
}
