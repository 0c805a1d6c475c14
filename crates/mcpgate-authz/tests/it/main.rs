//! End-to-end tests of the authorization server over real HTTP.
//!
//! Every trial starts the real router on `127.0.0.1:0` (through
//! `mcpgate-testkit`), drives it with reqwest (redirects never followed) and
//! the headless `Browser` that submits the real login and consent forms.
//! Nothing here talks to any address but loopback: the SSRF trials check
//! that the server refuses private destinations before connecting.
//!
//! The binary uses libtest-mimic (one trial per attack, each on its own
//! tokio runtime) so that the PostgreSQL trials can report themselves
//! *ignored* when `MCPGATE_TEST_POSTGRES_URL` is unset, rather than passing
//! without running. With the variable set, the run creates one database of
//! its own, gives every trial a fresh schema in it, and drops it at the end.

/// `trials![f, g]` turns async test functions of the calling module into
/// libtest-mimic trials named `module::function`.
macro_rules! trials {
    ($($name:ident),* $(,)?) => {
        vec![$($crate::common::trial(module_path!(), stringify!($name), $name)),*]
    };
}

mod authorize_attacks;
mod cimd;
mod client_pkjwt;
mod common;
mod concurrency;
mod consent;
mod dpop;
mod entitlements;
mod fleet;
mod flows;
mod headers;
mod idp;
mod idp_more;
mod idp_pkjwt;
mod idp_real;
mod jwt_bearer;
mod loopback;
mod pg;
mod registration;
mod snapshots;
mod token_attacks;

use std::process::ExitCode;

use libtest_mimic::Arguments;

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let pg = pg::Postgres::from_env();
    if !pg.enabled() {
        eprintln!(
            "note: PostgreSQL trials skipped (reported as ignored): MCPGATE_TEST_POSTGRES_URL unset"
        );
    }
    let mut trials = Vec::new();
    trials.extend(flows::trials(&pg));
    trials.extend(consent::trials());
    trials.extend(loopback::trials());
    trials.extend(entitlements::trials());
    trials.extend(registration::trials());
    trials.extend(cimd::trials());
    trials.extend(client_pkjwt::trials());
    trials.extend(dpop::trials());
    trials.extend(jwt_bearer::trials());
    trials.extend(authorize_attacks::trials());
    trials.extend(token_attacks::trials());
    trials.extend(concurrency::trials(&pg));
    trials.extend(fleet::trials(&pg));
    trials.extend(snapshots::trials());
    trials.extend(headers::trials());
    trials.extend(idp::trials());
    trials.extend(idp_more::trials());
    trials.extend(idp_pkjwt::trials());
    trials.extend(idp_real::trials());
    let conclusion = libtest_mimic::run(&args, trials);
    pg.teardown();
    conclusion.exit_code()
}
