//! `mcpgate-sandbox __sandbox-exec <plan> -- <args>`: the sandbox helper on
//! its own, for programs that embed the gateway without being `mcpgate`
//! (tests, benchmarks). `mcpgate` itself answers the same arguments.

fn main() {
    mcpgate_sandbox::helper::init();
    eprintln!(
        "mcpgate-sandbox is started by the mcpgate gateway: {} <plan JSON> -- <args>",
        mcpgate_sandbox::helper::HELPER_ARG
    );
    std::process::exit(2);
}
