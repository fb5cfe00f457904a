//! The README's library section shows `examples/embed.rs`, which the compiler checks (as an
//! example and as the crate documentation's example): the two must not drift apart.

#[test]
fn the_readme_shows_the_embedding_example_verbatim() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(dir.join("../../README.md")).unwrap();
    let example = std::fs::read_to_string(dir.join("examples/embed.rs")).unwrap();
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "README.md's Library section differs from crates/impasto/examples/embed.rs"
    );
}
