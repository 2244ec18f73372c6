//! `sqlx::migrate!` embeds `migrations/` at compile time: rebuild when a
//! migration is added or changed (otherwise a new migration file is silently
//! left out of the binary).
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
