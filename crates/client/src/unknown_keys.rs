//! Warnings about extra keys the catalog does not list for a connection's
//! type. The server stores them as given (providers read more keys than the
//! catalog lists) and reports them in `unknown_extra_keys`; a near miss of a
//! listed key, such as `extra.warehose`, is most often a typo, so the CLI
//! names the listed key it most resembles.

use switchboard_proto::v1 as pb;

/// Largest edit distance (insertions, deletions, substitutions and swaps of
/// neighbours) at which a listed key is suggested.
const MAX_DISTANCE: usize = 2;

/// Prints a warning to stderr for each of `unknown` (paths `extra.<key>`)
/// that `written` accepts, i.e. that this command sent.
pub(crate) fn warn(
    connection_type: &pb::ConnectionType,
    unknown: &[String],
    written: impl Fn(&str) -> bool,
) {
    for path in unknown.iter().filter(|path| written(path)) {
        eprintln!("warning: {}", message(connection_type, path));
    }
}

/// The warning for one unknown `path`, without the `warning: ` prefix.
fn message(connection_type: &pb::ConnectionType, path: &str) -> String {
    let type_key = &connection_type.r#type;
    match closest(connection_type, path) {
        Some(listed) => {
            format!("{path} is not a parameter of {type_key}; did you mean {listed}?")
        }
        None => format!(
            "{path} is not a parameter of {type_key}; it is stored as given \
             (`switchboard types {type_key}` lists the parameters)"
        ),
    }
}

/// The listed extra parameter nearest to `path`, when one is near enough to
/// be the key that was meant.
fn closest<'a>(connection_type: &'a pb::ConnectionType, path: &str) -> Option<&'a str> {
    let key = path.strip_prefix("extra.")?.to_lowercase();
    connection_type
        .parameters
        .iter()
        .filter_map(|parameter| {
            let listed = parameter.field.strip_prefix("extra.")?;
            let distance = strsim::damerau_levenshtein(&key, listed);
            // Two edits turn a short key into almost any other short key.
            let near = distance <= MAX_DISTANCE && distance * 3 <= listed.chars().count();
            near.then_some((distance, parameter.field.as_str()))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, field)| field)
}

/// Whether an update with `mask` (paths relative to the extra's owner, e.g.
/// `extra`, `extra.warehouse`) wrote the extra key at `path`.
pub(crate) fn masked(mask: &[String], path: &str) -> bool {
    mask.iter()
        .any(|written| written == "extra" || written == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snowflake() -> pb::ConnectionType {
        let parameter = |field: &str| pb::ConnectionTypeParameter {
            name: field.trim_start_matches("extra.").to_owned(),
            field: field.to_owned(),
            ..Default::default()
        };
        pb::ConnectionType {
            r#type: "snowflake_password".into(),
            parameters: ["login", "extra.account", "extra.warehouse", "extra.role"]
                .into_iter()
                .map(parameter)
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_near_miss_names_the_listed_key() {
        let snowflake = snowflake();
        assert_eq!(
            message(&snowflake, "extra.warehose"),
            "extra.warehose is not a parameter of snowflake_password; did you mean extra.warehouse?"
        );
        assert_eq!(
            closest(&snowflake, "extra.Warehouse"),
            Some("extra.warehouse")
        );
        assert_eq!(closest(&snowflake, "extra.rol"), Some("extra.role"));
        assert_eq!(closest(&snowflake, "extra.accuont"), Some("extra.account"));
    }

    #[test]
    fn a_key_like_none_of_them_gets_no_guess() {
        let snowflake = snowflake();
        assert_eq!(closest(&snowflake, "extra.ro"), None);
        assert_eq!(closest(&snowflake, "extra.client_session_keep_alive"), None);
        assert!(message(&snowflake, "extra.x").contains("it is stored as given"));
    }

    #[test]
    fn an_update_warns_about_the_keys_it_wrote() {
        let mask = ["host".to_owned(), "extra.warehose".to_owned()];
        assert!(masked(&mask, "extra.warehose"));
        assert!(!masked(&mask, "extra.old_typo"));
        assert!(masked(&["extra".to_owned()], "extra.old_typo"));
    }
}
