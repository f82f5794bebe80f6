//! The gRPC statuses control and the resolver answer with, built one way:
//! the same codes and details for the same causes, messages cut to 1 KiB,
//! and backend failures logged (at WARN or ERROR) with their cause while the
//! caller hears only that one happened.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Longest message a status carries; longer ones end in `…`.
const MAX_MESSAGE: usize = 1024;

/// INVALID_ARGUMENT naming every `(field, description)`: in the message and,
/// for programs, as a `google.rpc.BadRequest`.
pub fn invalid_argument(violations: impl IntoIterator<Item = (String, String)>) -> Status {
    let mut details = ErrorDetails::new();
    let mut summary = Vec::new();
    for (field, description) in violations {
        summary.push(format!("{field}: {description}"));
        details.add_bad_request_violation(field, description);
    }
    Status::with_error_details(Code::InvalidArgument, truncate(summary.join("; ")), details)
}

/// UNAUTHENTICATED with `message` and, for programs, `reason` in `domain` as
/// a `google.rpc.ErrorInfo`.
pub fn unauthenticated(reason: &str, domain: &str, message: String) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, domain, HashMap::new());
    Status::with_error_details(Code::Unauthenticated, truncate(message), details)
}

/// RESOURCE_EXHAUSTED for a caller over its rate limit.
pub fn rate_limited() -> Status {
    Status::resource_exhausted("rate limit exceeded; slow down and retry")
}

/// UNAVAILABLE saying `answer`; `cause` (which may name hosts and paths) is
/// logged at WARN, never sent.
pub fn unavailable(cause: &str, answer: &'static str) -> Status {
    tracing::warn!(error = %cause, "backend unavailable");
    Status::unavailable(answer)
}

/// INTERNAL; `cause` is logged at ERROR, never sent.
pub fn internal(cause: &str) -> Status {
    tracing::error!(error = %cause, "internal error");
    Status::internal("internal error")
}

/// `message` cut to at most 1 KiB on a character boundary, marked with `…`.
pub fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short".to_owned()), "short");
        let long = "é".repeat(MAX_MESSAGE);
        let cut = truncate(long);
        assert!(cut.len() <= MAX_MESSAGE + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn invalid_argument_names_every_field_in_message_and_details() {
        let status = invalid_argument([
            ("a".to_owned(), "is bad".to_owned()),
            ("b".to_owned(), "is worse".to_owned()),
        ]);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "a: is bad; b: is worse");
        let fields: Vec<String> = status
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .into_iter()
            .map(|violation| violation.field)
            .collect();
        assert_eq!(fields, ["a", "b"]);
    }
}
