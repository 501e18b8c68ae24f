//! Error text shared by sources and sinks.

/// An error with its causes, `outer: inner: root`: clients often keep the useful part (a
/// refused certificate, a 401) in the causes.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
