//! Rebuilds when a migration changes: `sqlx::migrate!` embeds the
//! `migrations/` directories at compile time.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
