//! Rebuild when a migration is added or changed: they are embedded in the binary
//! (`embed_migrations!`), and a new directory is not otherwise noticed by cargo.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
