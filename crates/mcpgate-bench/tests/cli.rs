//! The bench binary refuses bad arguments before it starts anything. Being an integration
//! test, this also makes `cargo test --workspace` build `mcpgate-bench` itself, next to
//! `mcpgate`, so `.ci/run` runs the soak with what the tests built.

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcpgate-bench"))
        .args(args)
        .output()
        .expect("running mcpgate-bench")
}

#[test]
fn soak_refuses_bad_arguments() {
    let cases: [(&[&str], &str); 4] = [
        (&["soak", "--duration", "5"], "at least 10 s"),
        (&["soak", "--duration", "1m"], "whole seconds"),
        (&["soak", "--duration"], "needs seconds"),
        (&["soak", "--bogus"], "unknown argument"),
    ];
    for (args, says) in cases {
        let out = bench(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn soak_without_an_mcpgate_binary_says_how_to_build_one() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_str().unwrap();
    let out = bench(&["soak", "--duration", "10", "--bin-dir", dir]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("not found") && err.contains("-p mcpgate"),
        "{err}"
    );
}
