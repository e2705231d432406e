//! What the examples share: printing an error the way a user should see it.

/// The error and its causes in words: `open x.evs: No such file or directory (os error 2)`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
