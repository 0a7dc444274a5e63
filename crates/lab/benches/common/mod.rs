//! What the lab's benches share: settings read from the environment.

/// The number in environment variable `name`, or `default` when it is not set; a value that is
/// not a number stops the bench with a message naming it.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text} is not a number")),
        Err(_) => default,
    }
}
