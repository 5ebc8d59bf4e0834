//! The bearer token that guards the door (`CONFIG_SERVER_TOKEN`, or the file
//! named by `CONFIG_SERVER_TOKEN_FILE`), read once at startup.
//!
//! A token file must be a regular file that not every user of the machine can
//! read; one trailing newline is dropped. A token is visible ASCII without
//! spaces: it travels in an HTTP header.

use std::os::unix::fs::PermissionsExt;

use crate::config::TokenSource;
use crate::error::Error;
use crate::source::{read_capped, Capped};

/// A token file holds at most this many bytes.
const MAX_TOKEN_BYTES: u64 = 4096;

/// The token's bytes.
pub(crate) fn read(source: &TokenSource) -> Result<Vec<u8>, Error> {
    match source {
        TokenSource::Value(token) => check("CONFIG_SERVER_TOKEN".to_owned(), token.as_bytes()),
        TokenSource::File(path) => {
            let setting = format!("CONFIG_SERVER_TOKEN_FILE={}", path.display());
            let bad = |problem: String| Error::InvalidToken {
                setting: setting.clone(),
                problem,
            };
            let mode = std::fs::metadata(path)
                .map_err(|err| bad(format!("cannot read it: {err}")))?
                .permissions()
                .mode();
            if mode & 0o004 != 0 {
                return Err(bad(format!(
                    "every user can read it (mode {:04o}); run `chmod o-r {}`",
                    mode & 0o7777,
                    path.display()
                )));
            }
            let text = read_capped(path, MAX_TOKEN_BYTES).map_err(|err| {
                bad(match err {
                    Capped::Io(err) => format!("cannot read it: {err}"),
                    Capped::NotRegular => "not a regular file".to_owned(),
                    Capped::TooBig(_) => format!("over {MAX_TOKEN_BYTES} bytes: not a token"),
                })
            })?;
            let text = strip_newline(&text);
            check(setting, text)
        }
    }
}

fn strip_newline(text: &[u8]) -> &[u8] {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    text.strip_suffix(b"\r").unwrap_or(text)
}

fn check(setting: String, token: &[u8]) -> Result<Vec<u8>, Error> {
    let problem = if token.is_empty() {
        "the token is empty"
    } else if !token.iter().all(|b| (0x21..=0x7e).contains(b)) {
        "the token must be visible ASCII characters without spaces (it travels in an HTTP header)"
    } else {
        return Ok(token.to_vec());
    };
    Err(Error::InvalidToken {
        setting,
        problem: problem.to_owned(),
    })
}
