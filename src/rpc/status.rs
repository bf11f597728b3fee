//! The one conversion from [`Error`] to `tonic::Status`, exhaustive so a new
//! error variant cannot slip through unmapped. INVALID_ARGUMENT carries
//! `google.rpc.BadRequest` field violations; RESOURCE_EXHAUSTED carries
//! `google.rpc.RetryInfo`.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::{Error, FieldViolation};

/// Most field violations returned in one status; a request with thousands of
/// bad list entries must not produce a status larger than the HTTP/2 header
/// limit of the client (which then sees a protocol error, not the reason).
const MAX_VIOLATIONS: usize = 20;
/// Longest description returned (descriptions may quote the offending value).
const MAX_DESCRIPTION_CHARS: usize = 120;

/// The violations a status carries, bounded in number and length; the
/// second value is how many were left out.
fn bounded(violations: Vec<FieldViolation>) -> (Vec<FieldViolation>, usize) {
    let more = violations.len().saturating_sub(MAX_VIOLATIONS);
    let shown = violations
        .into_iter()
        .take(MAX_VIOLATIONS)
        .map(|mut v| {
            if v.description.chars().count() > MAX_DESCRIPTION_CHARS {
                v.description = v
                    .description
                    .chars()
                    .take(MAX_DESCRIPTION_CHARS)
                    .collect::<String>()
                    + "…";
            }
            if v.field.chars().count() > MAX_DESCRIPTION_CHARS {
                v.field = v.field.chars().take(MAX_DESCRIPTION_CHARS).collect();
            }
            v
        })
        .collect();
    (shown, more)
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(violations) => {
                let (violations, more) = bounded(violations);
                let mut msg = Error::Invalid(violations.clone()).to_string();
                if more > 0 {
                    msg.push_str(&format!(" (and {more} more)"));
                }
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                Status::with_error_details(Code::InvalidArgument, msg, details)
            }
            Error::Missing(m) => Status::not_found(m),
            Error::Duplicate(m) => Status::already_exists(m),
            Error::WrongState(m) => Status::failed_precondition(m),
            Error::Conflict(m) => Status::aborted(m),
            Error::Forbidden(m) => Status::permission_denied(m),
            Error::OverLimit { message, retry_after } => Status::with_error_details(
                Code::ResourceExhausted,
                message,
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            Error::NotReady(m) => {
                tracing::warn!(error = %m, "database unavailable");
                Status::unavailable("database unavailable; retry later")
            }
            Error::Unexpected(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_field_violations() {
        let s: Status = Error::invalid("max", "must be at most 500").into();
        assert_eq!(s.code(), Code::InvalidArgument);
        let br = s.get_details_bad_request().expect("bad request details");
        assert_eq!(br.field_violations[0].field, "max");
    }

    #[test]
    fn huge_rejections_stay_small() {
        let many = (0..5000)
            .map(|i| FieldViolation::new(format!("rules[{i}].category"), "x".repeat(5000)))
            .collect();
        let s: Status = Error::Invalid(many).into();
        assert!(s.message().len() < 4096, "{}", s.message().len());
        assert!(s.message().ends_with("(and 4980 more)"));
        let br = s.get_details_bad_request().unwrap();
        assert_eq!(br.field_violations.len(), MAX_VIOLATIONS);
        assert!(br.field_violations[0].description.chars().count() <= MAX_DESCRIPTION_CHARS + 1);
    }

    #[test]
    fn exhausted_carries_retry_info() {
        let s: Status = Error::OverLimit {
            message: "slow down".into(),
            retry_after: std::time::Duration::from_secs(2),
        }
        .into();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.get_details_retry_info().is_some());
    }

    #[test]
    fn internal_detail_is_not_leaked() {
        let s: Status = Error::Unexpected("password=hunter2".into()).into();
        assert!(!s.message().contains("hunter2"));
    }
}
