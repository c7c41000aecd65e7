//! Comment rules: what a comment may say, and where a reply may go.

use crate::error::GraphError;

pub const MESSAGE_MAX_CHARS: usize = 2200;

/// Checks the `message` of a new comment or reply: present, not blank, within the limit.
pub fn check_message(message: Option<&str>) -> Result<String, GraphError> {
    let m = message
        .ok_or_else(|| GraphError::invalid_parameter("The parameter message is required."))?;
    if m.trim().is_empty() {
        return Err(GraphError::invalid_parameter(
            "The comment message is empty",
        ));
    }
    if m.chars().count() > MESSAGE_MAX_CHARS {
        return Err(GraphError::invalid_parameter(format!(
            "The comment message is longer than {MESSAGE_MAX_CHARS} characters"
        )));
    }
    Ok(m.to_owned())
}

/// Replies go only to top-level comments, as on Instagram.
pub fn check_reply_target(target_parent: Option<&str>) -> Result<(), GraphError> {
    match target_parent {
        None => Ok(()),
        Some(_) => Err(GraphError::invalid_parameter(
            "Replies can only be made to top-level comments, not to replies",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(check_message(Some("hi")).unwrap(), "hi");
        assert_eq!(check_message(None).unwrap_err().code, 100);
        assert_eq!(check_message(Some("  ")).unwrap_err().code, 100);
        assert!(check_message(Some(&"é".repeat(MESSAGE_MAX_CHARS))).is_ok());
        assert!(check_message(Some(&"é".repeat(MESSAGE_MAX_CHARS + 1))).is_err());
        assert!(check_reply_target(None).is_ok());
        assert!(check_reply_target(Some("1")).is_err());
    }
}
