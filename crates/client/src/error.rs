//! Client errors and their exit codes. A refused call keeps its gRPC status,
//! so the message can name each bad field (from `google.rpc.BadRequest`) and
//! the exit code can tell scripts what kind of failure it was.

use std::fmt;

use switchboard_domain::refusal::{ERROR_DOMAIN, RefusalReason};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Exit code for errors no other code covers.
const EXIT_OTHER: u8 = 1;
/// Exit code for bad flags or input caught before any call (clap uses 2 too).
const EXIT_USAGE: u8 = 2;
const EXIT_INVALID_ARGUMENT: u8 = 3;
const EXIT_NOT_FOUND: u8 = 4;
const EXIT_ALREADY_EXISTS: u8 = 5;
const EXIT_CONFLICT: u8 = 6;
const EXIT_DENIED: u8 = 7;
const EXIT_UNAVAILABLE: u8 = 8;

/// A mistake in the command line or its input files, found before calling
/// the server.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns early with a [`UsageError`].
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::error::UsageError(format!($($arg)*))))
    };
}
pub(crate) use usage;

/// The server could not be reached, or the connection broke before it
/// answered: what happened, in words, and what to change.
#[derive(Debug)]
pub(crate) struct UnreachableError {
    message: String,
    hint: Option<String>,
}

impl UnreachableError {
    pub(crate) fn new(message: impl Into<String>, hint: Option<String>) -> Self {
        Self {
            message: message.into(),
            hint,
        }
    }
}

impl fmt::Display for UnreachableError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(formatter, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for UnreachableError {}

/// A call the server refused: what was attempted and the status it returned.
#[derive(Debug)]
pub(crate) struct ApiError {
    action: String,
    status: Status,
    hint: Option<String>,
}

impl ApiError {
    pub(crate) fn new(action: impl Into<String>, status: Status) -> Self {
        Self {
            action: action.into(),
            status,
            hint: None,
        }
    }

    /// Adds advice printed below the message.
    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn code(&self) -> Code {
        self.status.code()
    }

    /// What was attempted, e.g. `cannot list the connections of workspaces/acme`.
    pub(crate) fn action(&self) -> &str {
        &self.action
    }

    /// The local error when the call failed in this client's transport (the
    /// connection broke, a deadline passed) rather than with a status the
    /// server sent: tonic keeps the cause only for the former.
    pub(crate) fn transport_failure(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.status)
    }

    /// The `(field, description)` pairs of the status's `BadRequest` detail.
    pub(crate) fn field_violations(&self) -> Vec<(String, String)> {
        self.status
            .get_details_bad_request()
            .map(|bad_request| {
                bad_request
                    .field_violations
                    .into_iter()
                    .map(|violation| (violation.field, violation.description))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Why the server refused the credentials, from its `google.rpc.ErrorInfo`.
    fn refusal(&self) -> Option<RefusalReason> {
        let info = self.status.get_details_error_info()?;
        (info.domain == ERROR_DOMAIN)
            .then(|| RefusalReason::parse(&info.reason))
            .flatten()
    }

    fn default_hint(&self) -> Option<&'static str> {
        match self.status.code() {
            Code::Unauthenticated => Some(match self.refusal() {
                Some(RefusalReason::Expired) => {
                    "the token has expired: get a new one (`switchboard token user --data-dir DIR \
                     --subject NAME --role WORKSPACE=ROLE --ttl 8h` for a development server) and \
                     run `switchboard login` again"
                }
                Some(RefusalReason::BadSignature) => {
                    "the token was likely minted for another data dir or key than this server's: \
                     mint one with `switchboard token user --data-dir DIR --subject NAME --role \
                     WORKSPACE=ROLE`, DIR being the data dir the server runs with, then run \
                     `switchboard login` again"
                }
                Some(RefusalReason::UserTokenRequired) => {
                    "pass a user token (`switchboard login`, --token-file or SWITCHBOARD_TOKEN); \
                     a deployment token only serves Airflow's calls to the resolver"
                }
                _ => {
                    "the token was refused: run `switchboard login` again or set SWITCHBOARD_TOKEN"
                }
            }),
            Code::Aborted => Some(
                "the resource changed since it was read: read it again and retry with its new etag",
            ),
            Code::Unavailable => Some("nothing was changed; retry later"),
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let violations = self.field_violations();
        write!(
            formatter,
            "{}: {}",
            self.action,
            code_text(self.status.code())
        )?;
        if violations.is_empty() {
            let message = self.status.message();
            if !message.is_empty() {
                write!(formatter, ": {message}")?;
            }
        }
        for (field, description) in &violations {
            write!(formatter, "\n  {field}: {description}")?;
        }
        if let Some(hint) = self.hint.as_deref().or_else(|| self.default_hint()) {
            write!(formatter, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Converts a call's result into its message, or an [`ApiError`] that names
/// the attempted action.
pub(crate) trait CallResult<T> {
    fn or_refused(self, action: impl FnOnce() -> String) -> anyhow::Result<T>;
}

impl<T> CallResult<T> for Result<tonic::Response<T>, Status> {
    fn or_refused(self, action: impl FnOnce() -> String) -> anyhow::Result<T> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| anyhow::Error::new(ApiError::new(action(), status)))
    }
}

/// Lower-case words for a gRPC code.
fn code_text(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "not implemented by this server",
        Code::Internal => "internal server error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "not authenticated",
    }
}

/// The exit code for `err`.
pub(crate) fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<UsageError>().is_some() {
        return EXIT_USAGE;
    }
    if err.downcast_ref::<UnreachableError>().is_some() {
        return EXIT_UNAVAILABLE;
    }
    let Some(api) = err.downcast_ref::<ApiError>() else {
        return EXIT_OTHER;
    };
    match api.code() {
        Code::InvalidArgument | Code::OutOfRange => EXIT_INVALID_ARGUMENT,
        Code::NotFound => EXIT_NOT_FOUND,
        Code::AlreadyExists => EXIT_ALREADY_EXISTS,
        Code::Aborted | Code::FailedPrecondition => EXIT_CONFLICT,
        Code::PermissionDenied | Code::Unauthenticated => EXIT_DENIED,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => EXIT_UNAVAILABLE,
        Code::Ok
        | Code::Cancelled
        | Code::Unknown
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss => EXIT_OTHER,
    }
}

/// The text printed after `error: `: the error and its causes.
pub(crate) fn describe(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

#[cfg(test)]
mod tests {
    use tonic_types::{ErrorDetails, StatusExt};

    use super::*;

    #[test]
    fn field_violations_are_listed_one_per_line_and_exit_3() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("connection.port", "must be between 1 and 65535");
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "connection.port: must be between 1 and 65535",
            details,
        );
        let err = anyhow::Error::new(ApiError::new("cannot create connection \"pg\"", status));
        assert_eq!(
            describe(&err),
            "cannot create connection \"pg\": invalid argument\n  connection.port: must be between 1 and 65535"
        );
        assert_eq!(exit_code(&err), EXIT_INVALID_ARGUMENT);
    }

    #[test]
    fn codes_map_to_distinct_exit_codes() {
        let exit = |code| {
            exit_code(&anyhow::Error::new(ApiError::new(
                "x",
                Status::new(code, "m"),
            )))
        };
        assert_eq!(exit(Code::NotFound), EXIT_NOT_FOUND);
        assert_eq!(exit(Code::AlreadyExists), EXIT_ALREADY_EXISTS);
        assert_eq!(exit(Code::Aborted), EXIT_CONFLICT);
        assert_eq!(exit(Code::PermissionDenied), EXIT_DENIED);
        assert_eq!(exit(Code::Unavailable), EXIT_UNAVAILABLE);
        assert_eq!(exit(Code::Internal), EXIT_OTHER);
        let usage = anyhow::Error::new(UsageError("bad".into()));
        assert_eq!(exit_code(&usage), EXIT_USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("io")), EXIT_OTHER);
    }
}
