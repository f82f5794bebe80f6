//! Human durations for flags (`90s`, `30m`, `1h`, `7d`), as the domain
//! crate parses them for every binary's flags and config files.

pub(crate) use switchboard_domain::duration::parse;
