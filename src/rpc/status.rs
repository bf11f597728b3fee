//! The one conversion from [`Error`] to `tonic::Status`, exhaustive so a new
//! error variant cannot slip through unmapped. INVALID_ARGUMENT carries
//! `google.rpc.BadRequest` field violations; RESOURCE_EXHAUSTED carries
//! `google.rpc.RetryInfo`; NOT_FOUND of a typed resource carries
//! `google.rpc.ResourceInfo` and `ErrorInfo`; FAILED_PRECONDITION with listed
//! conditions carries `google.rpc.PreconditionFailure` and `ErrorInfo`.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::{Error, FieldViolation};

/// `google.rpc.ErrorInfo.domain` of proctor's own reasons.
const DOMAIN: &str = "proctor";

/// Most field violations returned in one status; a request with thousands of
/// bad list entries must not produce a status larger than the HTTP/2 header
/// limit of the client (which then sees a protocol error, not the reason).
const MAX_VIOLATIONS: usize = 20;
/// Longest description returned (descriptions may quote the offending value).
const MAX_DESCRIPTION_CHARS: usize = 120;

/// `text` cut to [`MAX_DESCRIPTION_CHARS`] characters, with `…` when cut:
/// what a status may quote of the caller's input.
fn clipped(text: String) -> String {
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        text.chars().take(MAX_DESCRIPTION_CHARS).collect::<String>() + "…"
    } else {
        text
    }
}

/// The violations a status carries, bounded in number and length; the
/// second value is how many were left out.
fn bounded(violations: Vec<FieldViolation>) -> (Vec<FieldViolation>, usize) {
    let more = violations.len().saturating_sub(MAX_VIOLATIONS);
    let shown = violations
        .into_iter()
        .take(MAX_VIOLATIONS)
        .map(|mut v| {
            v.description = clipped(v.description);
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
            Error::NotFound { resource_type, name } => {
                // The name is the caller's input: bounded, so a huge id
                // cannot push the status past the client's header limit
                // (it travels in the message and in the details).
                let name = clipped(name);
                let mut details =
                    ErrorDetails::with_resource_info(resource_type, name.clone(), "", "not found");
                details.set_error_info(
                    "NOT_FOUND",
                    DOMAIN,
                    [("resource_type".to_owned(), resource_type.to_owned())],
                );
                Status::with_error_details(Code::NotFound, format!("{resource_type} {name}"), details)
            }
            Error::Unmet {
                reason,
                message,
                conditions,
            } => {
                let mut details = ErrorDetails::new();
                for c in conditions {
                    details.add_precondition_failure_violation(c.kind, c.subject, c.description);
                }
                details.set_error_info(reason, DOMAIN, std::collections::HashMap::new());
                Status::with_error_details(Code::FailedPrecondition, message, details)
            }
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
    fn not_found_names_the_resource_type() {
        let s: Status = Error::not_found("breach", "b9").into();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "breach b9");
        let info = s.get_details_resource_info().expect("resource info");
        assert_eq!(
            (info.resource_type.as_str(), info.resource_name.as_str()),
            ("breach", "b9")
        );
        let why = s.get_details_error_info().expect("error info");
        assert_eq!(
            (why.reason.as_str(), why.domain.as_str()),
            ("NOT_FOUND", "proctor")
        );
    }

    #[test]
    fn a_huge_missing_name_stays_small() {
        let s: Status = Error::not_found("breach", "x".repeat(5000)).into();
        assert!(s.message().chars().count() < 200, "{}", s.message().len());
        let info = s.get_details_resource_info().unwrap();
        assert!(info.resource_name.chars().count() <= MAX_DESCRIPTION_CHARS + 1);
    }

    #[test]
    fn unmet_preconditions_are_listed_with_their_reason() {
        let s: Status = Error::Unmet {
            reason: "VERSION_CONFLICT",
            message: "expected_version is 1 but the current version is 2".into(),
            conditions: vec![crate::error::Unmet {
                kind: "VERSION",
                subject: "tenants/t1/instructions".into(),
                description: "the current version is 2".into(),
            }],
        }
        .into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        let pf = s
            .get_details_precondition_failure()
            .expect("precondition failure");
        assert_eq!(pf.violations[0].r#type, "VERSION");
        assert_eq!(pf.violations[0].subject, "tenants/t1/instructions");
        assert_eq!(s.get_details_error_info().unwrap().reason, "VERSION_CONFLICT");
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
