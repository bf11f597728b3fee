//! Collects every problem of a request before rejecting it, so a client sees
//! all of its mistakes at once rather than one per round trip.

use crate::error::{Error, FieldViolation};

/// Accumulates field violations; `finish` turns them into one error.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// No violations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is wrong.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Records a violation when `bad` holds.
    pub fn check(&mut self, bad: bool, field: impl Into<String>, description: impl Into<String>) {
        if bad {
            self.add(field, description);
        }
    }

    /// Requires a non-blank string of at most `max` characters.
    pub fn required_text(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.add(field, "is required");
        } else {
            self.max_len(field, value, max);
        }
    }

    /// Bounds an optional string, and refuses NUL in it: PostgreSQL cannot
    /// store one and SQLite would, so refusing it here keeps both backends
    /// answering the same, with the field named.
    pub fn max_len(&mut self, field: &str, value: &str, max: usize) {
        if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        } else if value.contains('\0') {
            self.add(field, "must not contain NUL characters");
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when clean, else one INVALID_ARGUMENT naming every field.
    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_violation() {
        let mut v = Violations::new();
        v.required_text("a", " ", 10);
        v.required_text("b", "ok", 10);
        v.max_len("c", "abcdef", 3);
        v.check(true, "d", "bad");
        match v.finish() {
            Err(Error::Invalid(f)) => {
                let fields: Vec<_> = f.iter().map(|x| x.field.as_str()).collect();
                assert_eq!(fields, ["a", "c", "d"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn nul_is_refused_with_the_field() {
        let mut v = Violations::new();
        v.required_text("id", "a\0b", 10);
        v.max_len("note", "\0", 10);
        match v.finish() {
            Err(Error::Invalid(f)) => {
                let got: Vec<_> = f
                    .iter()
                    .map(|x| (x.field.as_str(), x.description.as_str()))
                    .collect();
                assert_eq!(
                    got,
                    [
                        ("id", "must not contain NUL characters"),
                        ("note", "must not contain NUL characters")
                    ]
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn clean_request_passes() {
        let mut v = Violations::new();
        v.required_text("a", "x", 1);
        assert!(v.is_empty());
        assert!(v.finish().is_ok());
    }
}
