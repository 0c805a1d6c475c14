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
    let Some((exp_text, tag)) = token.split_once('.') else {
        return false;
    };
    let Ok(exp) = exp_text.parse::<i64>() else {
        return false;
    };
    // Only the decimal form `issue` writes: `+100` or `0100` would be other spellings of it.
    if exp.to_string() != exp_text {
        return false;
    }
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

    /// Found by `fuzz::only_the_issued_token_verifies`: `i64::from_str` also reads `+100` and
    /// `0100`, so each token had other spellings that verified.
    #[test]
    fn expiry_has_one_spelling() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let t = issue(&key, "consent", b"s", 100);
        assert!(verify(&key, "consent", b"s", &t, 99));
        for other in [format!("+{t}"), format!("0{t}"), format!("00{t}")] {
            assert!(!verify(&key, "consent", b"s", &other, 99), "{other}");
        }
    }

    #[test]
    fn params_binding_is_unambiguous() {
        let a = bind_params(&[("ab".into(), "c".into())]);
        let b = bind_params(&[("a".into(), "bc".into())]);
        assert_ne!(a, b);
    }
}

/// Fuzzing (issue 15): only the exact token issued verifies.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(mcpgate_fuzzkit::config(2048))]

        #[test]
        fn only_the_issued_token_verifies(
            purpose in "[a-z-]{1,10}",
            binding in proptest::collection::vec(any::<u8>(), 0..24),
            exp in any::<i64>(),
            now in any::<i64>(),
            at in any::<usize>(),
            piece in prop_oneof![
                Just("+"), Just("0"), Just("-"), Just("."), Just(" "), Just("="), Just("A"), Just("\u{0}"),
            ],
            cut in any::<usize>(),
        ) {
            let key = hmac::Key::new(hmac::HMAC_SHA256, b"fuzz");
            let token = issue(&key, &purpose, &binding, exp);
            prop_assert_eq!(verify(&key, &purpose, &binding, &token, now), now < exp);
            let mut i = at % (token.len() + 1);
            while !token.is_char_boundary(i) {
                i -= 1;
            }
            let altered = format!("{}{piece}{}", &token[..i], &token[i..]);
            prop_assert!(!verify(&key, &purpose, &binding, &altered, i64::MIN), "{}", altered);
            let cut = &token[..cut % token.len()];
            prop_assert!(!verify(&key, &purpose, &binding, cut, i64::MIN));
        }

        #[test]
        fn arbitrary_tokens_fail(token in ".{0,80}", now in any::<i64>()) {
            let key = hmac::Key::new(hmac::HMAC_SHA256, b"fuzz");
            prop_assert!(!verify(&key, "consent", b"s", &token, now));
        }

        #[test]
        fn bindings_are_unambiguous(
            a in proptest::collection::vec(("\\PC{0,4}", "\\PC{0,4}"), 0..4),
            b in proptest::collection::vec(("\\PC{0,4}", "\\PC{0,4}"), 0..4),
        ) {
            prop_assert_eq!(bind_params(&a) == bind_params(&b), a == b);
        }
    }
}
