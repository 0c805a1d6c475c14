//! CSRF tokens and signed tickets: `exp.HMAC(key, purpose | binding | exp)`,
//! with the HMAC key derived from the master key. A token is valid only for
//! its purpose, its binding (login session, client request) and until `exp`.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn mac(key: &hmac::Key, purpose: &str, binding: &[u8], exp: i64) -> String {
    let mut ctx = hmac::Context::with_key(key);
    // Length-prefix every part so no two inputs serialise the same.
    for part in [purpose.as_bytes(), binding, exp.to_string().as_bytes()] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
}

/// Issues a token for `purpose` bound to `binding`, valid until `exp`.
pub fn issue(key: &hmac::Key, purpose: &str, binding: &[u8], exp: i64) -> String {
    format!("{exp}.{}", mac(key, purpose, binding, exp))
}

/// Checks a token in constant time; `now` must be before its expiry.
pub fn verify(key: &hmac::Key, purpose: &str, binding: &[u8], token: &str, now: i64) -> bool {
    let Some((exp, tag)) = token.split_once('.') else {
        return false;
    };
    let Ok(exp) = exp.parse::<i64>() else {
        return false;
    };
    if now >= exp {
        return false;
    }
    let expected = mac(key, purpose, binding, exp);
    mcpgate_types::secret::ct_eq(expected.as_bytes(), tag.as_bytes())
}

/// A stable byte string for a list of form parameters (length-prefixed).
pub fn bind_params(params: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in params {
        for part in [k, v] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_and_expiring() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let t = issue(&key, "consent", b"session-a", 100);
        assert!(verify(&key, "consent", b"session-a", &t, 99));
        assert!(!verify(&key, "consent", b"session-a", &t, 100));
        assert!(!verify(&key, "consent", b"session-b", &t, 99));
        assert!(!verify(&key, "login", b"session-a", &t, 99));
        let forged = format!("200.{}", t.split_once('.').unwrap().1);
        assert!(!verify(&key, "consent", b"session-a", &forged, 99));
        assert!(!verify(&key, "consent", b"session-a", "", 0));
        assert!(!verify(&key, "consent", b"session-a", "x.y", 0));
    }

    #[test]
    fn params_binding_is_unambiguous() {
        let a = bind_params(&[("ab".into(), "c".into())]);
        let b = bind_params(&[("a".into(), "bc".into())]);
        assert_ne!(a, b);
    }
}
