//! Bearer-token checks for the admin API.
use std::net::IpAddr;
use std::path::Path;

/// Environment variable that may carry the token instead of `admin_token_file`.
pub const TOKEN_ENV: &str = "MERIDIAN_ADMIN_TOKEN";

/// The admin token. Compared in constant time; never printed.
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("token in {0} is empty")]
    Empty(String),
}

impl Token {
    pub fn new(secret: &str) -> Option<Token> {
        let t = secret.trim();
        (!t.is_empty()).then(|| Token(t.as_bytes().to_vec()))
    }

    /// From `admin_token_file`, else `MERIDIAN_ADMIN_TOKEN`, else none.
    pub fn load(file: Option<&Path>) -> Result<Option<Token>, TokenError> {
        match file {
            Some(path) => Token::read(path).map(Some),
            None => Ok(std::env::var(TOKEN_ENV).ok().and_then(|v| Token::new(&v))),
        }
    }

    /// From a token file (`admin_token_file`, `read_token_file`).
    pub fn read(path: &Path) -> Result<Token, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        Token::new(&text).ok_or_else(|| TokenError::Empty(path.display().to_string()))
    }

    /// The secret itself, to send (`meridian ctl`); never printed.
    pub fn secret(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// Whether an `Authorization` header value carries this token.
    pub fn accepts(&self, header: Option<&[u8]>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        constant_time_eq(given.trim_ascii(), &self.0)
    }
}

/// Compares without an early exit, so the time taken does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// Read-only calls need no token from loopback peers.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_bearer_token() {
        let t = Token::new(" s3cret\n").unwrap();
        assert!(t.accepts(Some(b"Bearer s3cret")));
        assert!(!t.accepts(Some(b"Bearer s3cre")));
        assert!(!t.accepts(Some(b"Bearer s3cret2")));
        assert!(!t.accepts(Some(b"Basic s3cret")));
        assert!(!t.accepts(Some(b"s3cret")));
        assert!(!t.accepts(None));
        assert!(Token::new("  ").is_none());
    }

    #[test]
    fn loopback_includes_mapped_v4() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("192.0.2.1".parse().unwrap()));
    }
}
