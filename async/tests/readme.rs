//! The README's tokio example is this crate's `examples/follow_log.rs`, verbatim, so that
//! it compiles and runs with the crate's tests.

#[test]
fn the_readme_shows_the_example_that_compiles() {
    let readme = include_str!("../../README.md");
    let example = include_str!("../examples/follow_log.rs");
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "README.md's \"From async Rust (tokio)\" block differs from async/examples/follow_log.rs"
    );
}
